"""The rate-limit step of a generate request: once the caller is known, the ``limit_request``
hook admits the request against its key's limits (or raises ``RateLimited``, a 429), and the
``Admission`` it returns puts its ``x-ratelimit-*`` headers on the response and is ended, with
the request's LLM tokens, before the last byte: a client's next request finds this one over."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from warmgate.core.context import RequestContext
from warmgate.core.http.auth import Caller
from warmgate.core.plugins import await_me_maybe, pm

__all__ = ["Admission", "admit", "request_tokens"]


class Admission(Protocol):
    headers: Sequence[tuple[bytes, bytes]]
    """Header byte pairs for the response (the limits, what remains, when they reset)."""

    def end(self, tokens: int) -> Awaitable[None] | None:
        """The request is over; it used ``tokens`` LLM tokens (prompt plus completion)."""


async def admit(context: RequestContext, app: Any, caller: Caller) -> None:
    """Admit the request of ``caller``, or raise ``RateLimited`` (429)."""
    if caller.key is None:  # an operator key: no limits
        return
    admission = await await_me_maybe(pm.hook.limit_request(caller=caller, app=app))
    if admission is None:
        return
    context.headers = [*context.headers, *admission.headers]

    async def end() -> None:
        await await_me_maybe(admission.end(request_tokens(context)))

    context.on_end = (*context.on_end, end)


def request_tokens(context: RequestContext) -> int:
    """The LLM tokens (prompt plus completion) this request used, as the LLM runner reports them
    on its context; a completion it could not count exactly counts as its ``max_tokens``."""
    llm = context.log_fields.get("llm") or {}
    completion = llm.get("completion_tokens")
    if completion is None:
        completion = llm.get("quoted_tokens") if llm.get("finish_reason") not in (None, "error") else 0
    return int(llm.get("prompt_tokens") or 0) + int(completion or 0)

"""The rate-limit step of a generate request: once the caller is known, the ``limit_request``
hook admits the request against its key's limits (or raises ``RateLimited``, a 429), and the
``Admission`` it returns puts its ``x-ratelimit-*`` headers on the response and is ended, with
the request's LLM tokens, before the last byte: a client's next request finds this one over."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from warmgate.core.auth import Caller
from warmgate.core.logs import access_fields
from warmgate.core.middleware import EXTRA_HEADERS, ON_END
from warmgate.core.plugins import await_me_maybe, pm

__all__ = ["Admission", "admit", "request_tokens"]


class Admission(Protocol):
    headers: Sequence[tuple[bytes, bytes]]
    """Header byte pairs for the response (the limits, what remains, when they reset)."""

    def end(self, tokens: int) -> Awaitable[None] | None:
        """The request is over; it used ``tokens`` LLM tokens (prompt plus completion)."""


async def admit(scope: dict[str, Any], app: Any, caller: Caller) -> None:
    """Admit the request of ``caller``, or raise ``RateLimited`` (429)."""
    if caller.key is None:  # an operator key: no limits
        return
    admission = await await_me_maybe(pm.hook.limit_request(caller=caller, app=app))
    if admission is None:
        return
    state = scope["state"]
    state.setdefault(EXTRA_HEADERS, []).extend(admission.headers)

    async def end() -> None:
        await await_me_maybe(admission.end(request_tokens()))

    state.setdefault(ON_END, []).append(end)


def request_tokens() -> int:
    """The LLM tokens (prompt plus completion) this request used, as the LLM runner reports them
    for the bill; a completion it could not count exactly counts as its ``max_tokens``."""
    llm = access_fields.get(None) or {}
    llm = llm.get("llm") or {}
    completion = llm.get("completion_tokens")
    if completion is None:
        completion = llm.get("quoted_tokens") if llm.get("finish_reason") not in (None, "error") else 0
    return int(llm.get("prompt_tokens") or 0) + int(completion or 0)

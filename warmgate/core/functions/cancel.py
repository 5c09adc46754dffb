"""Abandoned work stops: a per-request cancellation flag that runners check between steps.

The route sets a fresh :class:`Cancellation` in a context variable before it calls the runner,
and sets it when the client disconnects. ``asyncio.to_thread`` copies the context, so a
synchronous runner in a worker thread sees the same flag through :func:`current_cancellation`.
A runner checks it where stopping is cheap (a diffusion step, a generated token, a sentence) and
calls :func:`raise_if_cancelled`; the route then answers 499, frees the slot and bills nothing.
A runner that never checks simply runs to its end, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from warmgate.core.http.errors import ClientDisconnected

__all__ = ["Cancellation", "RequestCancelled", "cancellation_scope", "current_cancellation", "raise_if_cancelled"]


class RequestCancelled(ClientDisconnected):
    """Raised by a runner that stopped because its client went away (answered as 499)."""


class Cancellation:
    """One request's flag: thread-safe, set once, never cleared."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


_NEVER = Cancellation()  # outside a request (direct runner calls, tests): never cancelled
_current: ContextVar[Cancellation] = ContextVar("warmgate_cancellation", default=_NEVER)


def current_cancellation() -> Cancellation:
    """The flag of the request being served in this context (a never-set one outside a request)."""
    return _current.get()


def raise_if_cancelled(where: str = "") -> None:
    """Stop here if this request's client has gone: raises :class:`RequestCancelled`."""
    if _current.get().cancelled:
        raise RequestCancelled(f"client disconnected; stopped {where}" if where else "client disconnected")


@contextmanager
def cancellation_scope() -> Iterator[Cancellation]:
    """A fresh flag for the code (and the tasks and threads it starts) inside the ``with``."""
    cancellation = Cancellation()
    token = _current.set(cancellation)
    try:
        yield cancellation
    finally:
        _current.reset(token)

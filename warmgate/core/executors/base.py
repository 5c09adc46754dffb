"""The executor contract: where a function's model runs and how a request reaches it.

A function (``core.functions``) owns one executor. The executor starts the model and returns
its *runner* (the handle the function holds while loaded), calls it for each request, and stops
it when the function scales to zero. The route never asks which executor it has: it builds a
``Call`` (the validated request and, for executors that forward bytes, the raw one) and relays
whatever comes back (a response struct, a ``litestar.Response`` or a stream of chunks).
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from warmgate.core.executors.calling import as_chunks
from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.http import wire
from warmgate.core.http.errors import WarmgateError
from warmgate.core.settings import FunctionConfig, Settings

__all__ = ["BaseExecutor", "Call", "Executor", "ExecutorFactory", "RawRequest", "RunnersFailed"]


class RunnersFailed(WarmgateError):
    """Every runner of a function failed before anything reached the client, is in cooldown or
    is priced out: the route tries the function's ``fallbacks``, else answers this (503 with
    Retry-After, unless the one runner's own status says more)."""

    def __init__(self, msg: str, status_code: int = 503, *, retry_after: float | None = None) -> None:
        super().__init__(msg, headers={"Retry-After": str(max(1, math.ceil(retry_after)))}
                         if retry_after is not None else None)
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class RawRequest:
    """The request as it arrived, for an executor that forwards it untouched."""

    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Call:
    """One request to a function's runner."""

    spec: PipelineSpec
    """The route's pipeline: the function's own, or one that serves it (OpenAI chat on an LLM)."""
    body: Any
    """The validated (and prepared) request struct."""
    raw: RawRequest | None = None
    """Set when the executor ``forwards_raw``."""
    disconnected: Callable[[], Awaitable[None]] | None = None
    """Returns when the client has gone; an executor may stop the work then (``ClientDisconnected``)."""


class Executor(Protocol):
    """Where one function's model runs. Registered by name (``register_executors``) as a
    factory ``(config, pipelines, settings) -> Executor``; a function's ``executor`` setting
    picks it."""

    forwards_raw: bool
    """``call`` needs ``Call.raw``: the route keeps each request's body bytes."""
    scales_itself: bool
    """The executor scales to zero on its own: the gateway never unloads the function."""
    in_process: bool
    """The model loads into the gateway's process (so ``serve --workers`` would load it in each),
    unless the pipeline says the function only relays (``PipelineSpec.relays``)."""
    runner_prices: tuple[tuple[str, FunctionConfig], ...]
    """Runners with a price of their own, as (url, the config the ``price_request`` hooks price
    for it); empty: the function's price is every runner's. The route quotes each (a cap keeps
    those under it, ``RequestContext.offers``) and the bill is the serving runner's."""

    async def start(self) -> Any:
        """Load the model (or connect, or deploy) and return the runner the function holds."""

    async def call(self, runner: Any, call: Call) -> Any:
        """Run one request: a response struct, a ``litestar.Response``, or a stream (an async
        iterator or a generator of ``bytes``/``str`` chunks)."""

    def stream(self, runner: Any, call: Call) -> AsyncIterator[Any]:
        """The request's answer as chunks."""

    async def stop(self, runner: Any) -> None:
        """Release what ``start`` returned (scale to zero)."""

    async def shutdown(self) -> None:
        """The gateway stops: release what outlives a runner (a cluster this process started)."""

    def remote_info(self, runner: Any, last_error: str | None) -> wire.RemoteInfo | None:
        """What ``/functions`` shows of a runner on another server, or None."""

    def runner_info(self) -> list[wire.RunnerInfo] | None:
        """Each runner the executor routes to, as ``/functions`` and ``/metrics`` show it, or None."""


ExecutorFactory = Callable[[FunctionConfig, Mapping[str, PipelineSpec], Settings], Executor]
"""``factory(config, pipelines, settings)``: one function's executor (often the class itself)."""


class BaseExecutor(abc.ABC):
    """Defaults for an executor: a runner that needs no url, closed with its ``close()``, and
    streamed by iterating what ``call`` returns. ``start`` and ``call`` are each executor's own."""

    forwards_raw: ClassVar[bool] = False
    scales_itself: ClassVar[bool] = False
    in_process: ClassVar[bool] = False
    runner_prices: tuple[tuple[str, FunctionConfig], ...] = ()

    def __init__(self, config: FunctionConfig, pipelines: Mapping[str, PipelineSpec], settings: Settings) -> None:
        self.config = config
        self.pipelines = pipelines
        self.settings = settings

    @classmethod
    def check_config(cls, config: FunctionConfig) -> tuple[str, str] | None:
        """A problem with ``config`` for this executor, as (field, message), or None."""
        if config.url:
            return "url", "url is only used with executor: remote"
        if config.runners:
            return "runners", "runners are only used with executor: remote"
        return None

    @abc.abstractmethod
    async def start(self) -> Any:
        """Load (or reach) the function's model: the runner that ``call`` is given."""

    @abc.abstractmethod
    async def call(self, runner: Any, call: Call) -> Any:
        """Run one request on ``runner``: its answer, or a stream of chunks."""

    async def stream(self, runner: Any, call: Call) -> AsyncIterator[Any]:
        async for chunk in as_chunks(await self.call(runner, call)):
            yield chunk

    async def stop(self, runner: Any) -> None:
        close = getattr(runner, "close", None)
        if close is None:
            return
        result = await close() if inspect.iscoroutinefunction(close) else await asyncio.to_thread(close)
        if inspect.isawaitable(result):
            await result

    async def shutdown(self) -> None:
        return None

    def remote_info(self, runner: Any, last_error: str | None) -> wire.RemoteInfo | None:
        return None

    def runner_info(self) -> list[wire.RunnerInfo] | None:
        return None

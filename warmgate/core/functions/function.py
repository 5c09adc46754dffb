"""A function: one pipeline + model, loaded on first use, bounded, and unloaded when idle."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import gc
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from warmgate.core.executors.base import Executor, RunnersFailed
from warmgate.core.executors.local import describe_error as _describe
from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.http.errors import CapacityError, LoadError
from warmgate.core.settings import FunctionConfig

__all__ = ["Function", "FunctionObserver", "FunctionState", "Lease", "free_memory", "loading_function"]

_log = structlog.get_logger("warmgate.functions")

loading_function: contextvars.ContextVar[Function | None] = contextvars.ContextVar("loading_function", default=None)
"""The function whose model is being loaded: a loader may read its config (scaling, name)."""


class FunctionState(str, enum.Enum):
    COLD = "cold"
    """Not loaded: never used yet, or unloaded after idling or eviction."""
    LOADING = "loading"
    """The model is loading; every request that arrives meanwhile waits for this one load."""
    WARM = "warm"
    """Loaded and serving at least one request."""
    IDLE = "idle"
    """Loaded with no request in flight; unloads after ``idle_timeout``."""
    UNLOADING = "unloading"
    """Releasing the model and its memory (scale to zero)."""
    ERROR = "error"
    """The last load failed; ``last_error`` says why and the next request retries."""


class FunctionObserver(Protocol):
    """What metrics and logs hear from a function."""

    def state_changed(self, fn: Function, old: FunctionState, new: FunctionState) -> None: ...
    def loaded(self, fn: Function, seconds: float) -> None: ...


class _NullObserver:
    """Observes nothing: a function built without metrics (as in unit use)."""

    def state_changed(self, fn: Function, old: FunctionState, new: FunctionState) -> None:
        return None

    def loaded(self, fn: Function, seconds: float) -> None:
        return None


_expiring: set[asyncio.Task[Any]] = set()
"""Unloads started by a ``keep_alive`` running out, held so they are not garbage-collected."""


def free_memory() -> None:
    """Return freed model memory to the system and, where torch is loaded, to the GPU."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except (OSError, ValueError, IndexError):
        return 0


class Function:
    """Lifecycle and admission for one (pipeline, model) pair.

    ``acquire()`` admits a request (or raises 503 when the queue is full), waits for a slot,
    loads the model if needed (single-flight) and returns a ``Lease``; releasing the lease frees
    the slot and starts the idle clock.
    """

    def __init__(
        self,
        config: FunctionConfig,
        spec: PipelineSpec,
        executor: Executor,
        *,
        retry_after: float = 1.0,
        observer: FunctionObserver | None = None,
        before_load: Callable[[Function], Awaitable[None]] | None = None,
        after_load: Callable[[Function], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.spec = spec
        self.name = config.name
        self._state = FunctionState.COLD
        self.last_error: str | None = None
        self.loads = 0
        self.load_seconds: float | None = None
        self.in_flight = 0
        self.waiting = 0
        self.requests = 0
        self.last_used = time.monotonic()
        self.last_used_at: float | None = None
        self.memory_bytes: int | None = config.resources.memory  # type: ignore[assignment]
        self.executor = executor
        self._retry_after = retry_after
        self._observer = observer or _NullObserver()
        self._before_load = before_load
        self._after_load = after_load
        self._runner: Any = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loading: asyncio.Task[Any] | None = None
        self._unloading: asyncio.Future[None] | None = None
        self.keep_alive: float | None = None
        """Seconds to stay loaded once idle, as the last request that said so asked (Ollama's
        ``keep_alive``): 0 unloads when its request ends, negative never; ``None``:
        ``scaling.idle_timeout``. Forgotten when the model unloads."""
        self._expiry: asyncio.TimerHandle | None = None

    # -- state -------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._runner is not None

    @property
    def runner(self) -> Any:
        """The loaded runner, or None."""
        return self._runner

    @property
    def evictable(self) -> bool:
        """Loaded, unused, and not kept warm: may be unloaded to make room or when idle."""
        return (self._runner is not None and not self.config.keep_warm and self.in_flight == 0
                and self.waiting == 0 and self._loading is None and not self.executor.scales_itself)

    @property
    def idle_timeout(self) -> float:
        """Seconds idle before the reaper unloads the model; 0: never (see ``keep_alive``)."""
        if self.keep_alive is None:
            return self.config.scaling.idle_timeout
        return max(0.0, self.keep_alive)

    @property
    def state(self) -> FunctionState:
        """The lifecycle state; a loaded function is WARM while requests run, else IDLE."""
        if self._state is FunctionState.IDLE and self.in_flight:
            return FunctionState.WARM
        return self._state

    def _set_state(self, new: FunctionState) -> None:
        """Lifecycle transitions only: serving does not flip IDLE/WARM (``state`` derives it)."""
        old, self._state = self._state, new
        if old is not new:
            self._observer.state_changed(self, old, new)

    # -- admission ---------------------------------------------------------------------

    @property
    def has_free_slot(self) -> bool:
        return self.in_flight < self.config.max_concurrency

    def acquire_now(self) -> Lease | None:
        """A lease without waiting when the model is loaded and a slot is free, else None."""
        if self._runner is None or self.in_flight >= self.config.max_concurrency:
            return None
        self.in_flight += 1
        self.requests += 1
        return Lease(self, self._runner)

    async def acquire(self) -> Lease:
        if self.in_flight < self.config.max_concurrency:
            self.in_flight += 1  # a free slot: no await on the fast path
        else:
            await self._wait_for_slot()
        try:
            runner = self._runner if self._runner is not None else await self._ensure_loaded()
        except BaseException:
            self._release()
            raise
        self.requests += 1
        return Lease(self, runner)

    async def _wait_for_slot(self) -> None:
        """Queue for a slot; ``_release`` hands its slot to the first waiter (FIFO)."""
        if self.waiting >= self.config.max_queue:
            raise CapacityError(
                f"function {self.name!r} is at capacity ({self.in_flight} running, {self.waiting} queued); retry later",
                retry_after=self._retry_after,
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.waiting += 1
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over just as the client left: pass it on
            else:
                self._waiters.remove(waiter)
            raise
        finally:
            self.waiting -= 1

    def _release(self) -> None:
        self.last_used = time.monotonic()
        self.last_used_at = time.time()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter; in_flight is unchanged
                return
        self.in_flight -= 1
        if self.in_flight == 0 and self.keep_alive is not None and self.keep_alive >= 0:
            self._schedule_expiry(self.keep_alive)

    def _schedule_expiry(self, seconds: float) -> None:
        """Unload ``seconds`` after the last request ended, unless another came meanwhile: the
        reaper may not run at all (no function has an idle timeout) or be slower."""
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        if not self.evictable or self.keep_alive is None or self.keep_alive < 0:
            return  # busy (its release schedules again), unloaded, or kept for ever meanwhile
        left = self.keep_alive - self.idle_for(time.monotonic())
        if left > 0.001:
            self._schedule_expiry(left)
        else:
            task = asyncio.get_running_loop().create_task(self.unload(reason="keep_alive"))
            _expiring.add(task)
            task.add_done_callback(_expiring.discard)

    # -- loading -----------------------------------------------------------------------

    async def ensure_loaded(self) -> None:
        """Load now (used for ``warm: true`` at startup)."""
        await self._ensure_loaded()

    async def _ensure_loaded(self) -> Any:
        if self._runner is not None:
            return self._runner
        if self._unloading is not None:
            await asyncio.shield(self._unloading)
        if self._runner is not None:
            return self._runner
        if self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._load(), name=f"load {self.name}")
        return await asyncio.shield(self._loading)

    async def _load(self) -> Any:
        self._set_state(FunctionState.LOADING)
        started = time.perf_counter()
        log = _log.bind(function=self.name, model_id=self.config.model_id)
        log.info("function_loading")
        try:
            if self._before_load is not None:
                await self._before_load(self)
            rss_before = _rss_bytes()
            token = loading_function.set(self)
            try:
                runner = await self.executor.start()
            finally:
                loading_function.reset(token)
        except BaseException as exc:
            self.last_error = _describe(exc)
            self._set_state(FunctionState.ERROR)
            log.error("function_load_failed", error=self.last_error)
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(exc, (CapacityError, RunnersFailed)):  # keep their status and Retry-After
                raise
            raise LoadError(f"function {self.name!r} failed to load model {self.config.model_id!r}: {self.last_error}") from exc
        finally:
            self._loading = None
        self.load_seconds = time.perf_counter() - started
        self.loads += 1
        self.last_error = None
        self.memory_bytes = (getattr(runner, "memory_bytes", None) or max(0, _rss_bytes() - rss_before)
                             or self.memory_bytes)
        self._runner = runner
        self.last_used = time.monotonic()
        self._set_state(FunctionState.IDLE)
        self._observer.loaded(self, self.load_seconds)
        if self._after_load is not None:
            await self._after_load(self)
        log.info("function_loaded", seconds=round(self.load_seconds, 3), memory_bytes=self.memory_bytes)
        return runner

    async def unload(self, reason: str = "idle") -> bool:
        """Release the model and free its memory; False if it is busy or not loaded."""
        if not self.evictable and not (reason == "shutdown" and self._runner is not None and self.in_flight == 0):
            return False
        runner, self._runner = self._runner, None
        self.keep_alive = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._unloading = asyncio.get_running_loop().create_future()
        self._set_state(FunctionState.UNLOADING)
        try:
            await self.executor.stop(runner)
        except Exception as exc:
            _log.warning("function_close_failed", function=self.name, error=_describe(exc))
        finally:
            del runner
            await asyncio.to_thread(free_memory)
            self._set_state(FunctionState.COLD)
            self._unloading.set_result(None)
            self._unloading = None
        _log.info("function_unloaded", function=self.name, reason=reason)
        return True

    def idle_for(self, now: float) -> float:
        return now - self.last_used

    async def cancel_load(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
            with contextlib.suppress(BaseException):  # we only wait for it to end
                await self._loading


class Lease:
    """A slot held on a function for one request; ``release()`` is idempotent."""

    __slots__ = ("function", "runner", "_released")

    def __init__(self, function: Function, runner: Any) -> None:
        self.function = function
        self.runner = runner
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.function._release()

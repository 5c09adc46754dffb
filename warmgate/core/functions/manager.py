"""Holds the functions: finds one for a request, loads warm ones, reaps idle ones, keeps the memory budget."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import structlog

from warmgate.core.executors import get_executors, make_executor
from warmgate.core.functions.function import Function, FunctionObserver, FunctionState
from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.http.errors import CapacityError, ClientError, NotFound
from warmgate.core.settings import FunctionConfig, Settings

__all__ = ["FunctionManager"]

_log = structlog.get_logger("warmgate.manager")


class FunctionManager:
    """Every function of the gateway, by name and by (pipeline, model id or alias)."""

    def __init__(
        self,
        settings: Settings,
        pipelines: Mapping[str, PipelineSpec],
        configs: list[FunctionConfig],
        observer: FunctionObserver | None = None,
    ) -> None:
        self.settings = settings
        self.pipelines = dict(pipelines)
        self.memory_budget: int | None = settings.gateway.memory_budget  # type: ignore[assignment]
        self.functions: dict[str, Function] = {}
        self._by_pipeline: dict[str, list[Function]] = {}
        self._lookup: dict[tuple[str, str], Function] = {}
        self._budget_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.Task[None] | None = None
        executors = get_executors()
        for config in configs:
            spec = self.pipelines[config.pipeline]
            fn = Function(
                config,
                spec,
                make_executor(config, self.pipelines, settings, executors),
                retry_after=settings.gateway.retry_after,
                observer=observer,
                before_load=self._make_room if self.memory_budget is not None else None,
                after_load=self._settle_budget if self.memory_budget is not None else None,
            )
            self.functions[fn.name] = fn
            self._by_pipeline.setdefault(config.pipeline, []).append(fn)
            for key in (config.model_id, config.name, *config.aliases):
                self._lookup.setdefault((config.pipeline, key), fn)
        for route in self.pipelines.values():  # names a served function has on one route only
            if route.serves and route.model_names is not None:
                for fn in self._by_pipeline.get(route.serves, ()):
                    for key in route.model_names(fn.config):
                        self._lookup.setdefault((route.name, key), fn)
        self.chains: dict[str, list[Function]] = {name: self._chain(fn) for name, fn in self.functions.items()}
        """Each function followed by its ``fallbacks``, theirs after them, each once (the config
        refused unknown names and cycles)."""

    def _chain(self, fn: Function) -> list[Function]:
        chain = [fn]
        for current in chain:  # grows as it is read: breadth first
            for name in current.config.fallbacks:
                fallback = self._lookup.get((current.config.pipeline, name))
                if fallback is not None and fallback not in chain:
                    chain.append(fallback)
        return chain

    # -- lookup ------------------------------------------------------------------------

    def resolve(self, pipeline: str, model_id: str, wire: str = "livepeer", route: str = "") -> Function:
        """The function serving ``model_id`` (blank: the pipeline's first function), also by the
        names it has on ``route`` (a spec's ``model_names``). A model not served is a 400 on a
        Livepeer route (the ai-runner's answer) and a 404 on the others (``wire``, the route
        spec's API family)."""
        unknown = ClientError if wire == "livepeer" else NotFound
        if not model_id:
            candidates = self._by_pipeline.get(pipeline)
            if candidates:
                return candidates[0]
            raise unknown(f"no model is configured for pipeline {pipeline!r}")
        fn = self._lookup.get((pipeline, model_id)) or self._lookup.get((route, model_id))
        if fn is None:
            served = ", ".join(f.config.model_id for f in self._by_pipeline.get(pipeline, [])) or "none"
            raise unknown(f"model {model_id!r} is not served for pipeline {pipeline!r}; available: {served}")
        return fn

    # -- loading -----------------------------------------------------------------------

    async def _make_room(self, fn: Function) -> None:
        """Before a load: unload least recently used idle functions until ``fn``'s expected size fits."""
        await self._evict_for(fn, strict=True)

    async def _settle_budget(self, fn: Function) -> None:
        """After a load, when the real size is known: evict more if the budget is now exceeded."""
        await self._evict_for(fn, strict=False)

    async def _evict_for(self, fn: Function, *, strict: bool) -> None:
        assert self.memory_budget is not None
        async with self._budget_lock:
            need = 0 if fn.loaded else fn.memory_bytes or 0
            while True:
                used = sum(f.memory_bytes or 0 for f in self.functions.values() if f.loaded)
                if used + need <= self.memory_budget:
                    return
                victims = sorted((f for f in self.functions.values() if f is not fn and f.evictable),
                                 key=lambda f: f.last_used)
                if not victims:
                    if not strict:
                        _log.warning("memory_budget_exceeded", used=used, budget=self.memory_budget)
                        return
                    raise CapacityError(
                        f"memory budget {self.memory_budget} bytes: {used} in use, {fn.name!r} needs {need}, "
                        "and no idle function can be unloaded",
                        retry_after=self.settings.gateway.retry_after,
                    )
                _log.info("function_evicted", function=victims[0].name, to_fit=fn.name)
                await victims[0].unload(reason="evicted")

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load warm functions in the background and start the idle reaper."""
        for fn in self.functions.values():
            if fn.config.keep_warm:
                self._spawn(self._warm(fn), f"warm {fn.name}")
        interval = self._reap_interval()
        if interval is not None:
            self._reaper = self._spawn(self._reap_forever(interval), "idle reaper")

    async def _warm(self, fn: Function) -> None:
        with contextlib.suppress(Exception):  # the error is recorded on the function and logged
            await fn.ensure_loaded()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _reap_interval(self) -> float | None:
        timeouts = [f.config.scaling.idle_timeout for f in self.functions.values()
                    if f.config.scaling.idle_timeout > 0 and not f.config.keep_warm]
        if not timeouts:
            return None
        return min(5.0, max(0.05, min(timeouts) / 4))

    async def _reap_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.reap_idle()

    async def reap_idle(self) -> list[str]:
        """Unload every function idle past its ``idle_timeout``; returns their names."""
        now = time.monotonic()
        unloaded = []
        for fn in list(self.functions.values()):
            timeout = fn.idle_timeout
            if timeout > 0 and fn.evictable and fn.idle_for(now) >= timeout:
                if await fn.unload(reason="idle"):
                    unloaded.append(fn.name)
        return unloaded

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for fn in self.functions.values():
            await fn.cancel_load()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fn in self.functions.values():
            await fn.unload(reason="shutdown")
        for fn in self.functions.values():
            await fn.executor.shutdown()

    # -- reporting ---------------------------------------------------------------------

    def health(self) -> str:
        """LOADING / ERROR / OK / IDLE, as the Livepeer runner reports it."""
        states = [f.state for f in self.functions.values()]
        if FunctionState.LOADING in states:
            return "LOADING"
        if FunctionState.ERROR in states:
            return "ERROR"
        if any(f.in_flight for f in self.functions.values()):
            return "OK"
        return "IDLE"

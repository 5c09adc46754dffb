"""The runner surface: health, functions, hardware, version, metrics, OpenAPI and the index."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from warmgate.core import hardware
from warmgate.core.functions.function import Function
from warmgate.core.functions.manager import FunctionManager
from warmgate.core.http import wire
from warmgate.core.metrics import Metrics
from warmgate.core.plugins import pm
from warmgate.core.version import __version__

__all__ = ["runner_routes"]

_encoder = msgspec.json.Encoder()


def _json(value: Any) -> Response[bytes]:
    return Response(_encoder.encode(value), media_type="application/json")


def function_info(fn: Function) -> wire.FunctionInfo:
    c = fn.config
    return wire.FunctionInfo(
        name=fn.name, pipeline=c.pipeline, model_id=c.model_id, state=fn.state.value, executor=c.executor,
        warm=c.keep_warm, loads=fn.loads, requests=fn.requests, in_flight=fn.in_flight, queued=fn.waiting,
        max_concurrency=c.max_concurrency, max_queue=c.max_queue, idle_timeout=c.scaling.idle_timeout,
        last_error=fn.last_error, load_seconds=fn.load_seconds, last_used_at=fn.last_used_at,
        memory_bytes=fn.memory_bytes, demo=c.demo, remote=fn.executor.remote_info(fn.runner, fn.last_error),
        runners=fn.executor.runner_info(),
    )


_HEALTH_ORDER = ("LOADING", "ERROR", "OK", "IDLE")


def most_pressing(states: list[str | None]) -> str:
    """LOADING before ERROR before OK before IDLE, as one runner with several parts reports."""
    return min((s for s in states if s in _HEALTH_ORDER), key=_HEALTH_ORDER.index, default="IDLE")


def runner_routes(manager: FunctionManager, metrics: Metrics, openapi: dict[str, Any],
                  plugin_routes: Sequence[Any] = ()) -> list[HTTPRouteHandler]:
    """The core routes; a plugin route with ``opt={"index": name}`` is linked from ``/`` as ``name``."""
    functions = list(manager.functions.values())
    pipeline = ",".join(dict.fromkeys(f.config.pipeline for f in functions))
    model_id = ",".join(dict.fromkeys(f.config.model_id for f in functions))
    openapi_bytes = _encoder.encode(openapi)
    index = {"name": "warmgate", "version": __version__, "openapi": "/openapi.json", "health": "/health",
             "functions": "/functions", "metrics": "/metrics",
             "pipelines": {s.name: list(s.paths) for s in manager.pipelines.values()}}
    for route in plugin_routes:
        if isinstance(route, HTTPRouteHandler) and route.opt.get("index"):
            index[route.opt["index"]] = min(route.paths, key=len)

    @get(["/health", "/health/"], sync_to_thread=False)
    def health(request: Request[Any, Any, Any]) -> Response[bytes]:
        states = [manager.health(), *pm.hook.health(app=request.app)]
        return _json(wire.HealthCheck(status=most_pressing(states)))  # type: ignore[arg-type]

    @get(["/functions", "/functions/"], sync_to_thread=False)
    def list_functions() -> Response[bytes]:
        return _json(wire.FunctionList([function_info(f) for f in manager.functions.values()]))

    @get(["/hardware/info", "/hardware/info/"])
    async def hardware_info() -> Response[bytes]:
        gpus = await asyncio.to_thread(hardware.gpu_info)
        return _json(wire.HardwareInformation(pipeline=pipeline, model_id=model_id, gpu_info=gpus))

    @get(["/hardware/stats", "/hardware/stats/"])
    async def hardware_stats() -> Response[bytes]:
        gpus = await asyncio.to_thread(hardware.gpu_stats)
        return _json(wire.HardwareStats(pipeline=pipeline, model_id=model_id, gpu_stats=gpus))

    @get(["/version", "/version/"], sync_to_thread=False)
    def version() -> Response[bytes]:
        return _json(wire.Version(pipeline=pipeline, model_id=model_id, version=__version__))

    @get(["/metrics", "/metrics/"], sync_to_thread=False)
    def prometheus() -> Response[bytes]:
        # Litestar adds "; charset=utf-8" to text/* media types
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @get(["/openapi.json"], sync_to_thread=False)
    def openapi_document() -> Response[bytes]:
        return Response(openapi_bytes, media_type="application/json")

    @get(["/"], sync_to_thread=False)
    def root() -> Response[bytes]:
        return _json(index)

    return [health, list_functions, hardware_info, hardware_stats, version, prometheus, openapi_document, root]

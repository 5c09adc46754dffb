"""``create_app``: the one place the gateway is assembled."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State

from warmgate.core.config import load_settings, plan_functions
from warmgate.core.functions.manager import FunctionManager
from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.http.auth import Authenticator
from warmgate.core.http.decode import MAX_FORM_PARTS
from warmgate.core.http.exception_handlers import EXCEPTION_HANDLERS
from warmgate.core.http.middleware import wrap_asgi
from warmgate.core.http.openapi import build_openapi
from warmgate.core.http.routes import pipeline_route
from warmgate.core.http.runner_routes import runner_routes
from warmgate.core.logs import AccessLog, configure_logging, json_lines
from warmgate.core.metrics import Metrics
from warmgate.core.plugins import await_me_maybe, get_pipelines, get_routes, pm
from warmgate.core.settings import Settings
from warmgate.core.tracing.settings import TracingSettings
from warmgate.core.tracing.setup import make_tracer

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, *, pipelines: Mapping[str, PipelineSpec] | None = None) -> Litestar:
    """Build the gateway.

    Args:
        settings: gateway settings and functions; ``None`` reads them with ``load_settings()``.
        pipelines: the pipelines to serve; ``None`` collects them from the plugins.

    Returns:
        The Litestar app. ``app.state.functions`` is its ``FunctionManager``, ``app.state.tracer``
        its ``Tracer`` (None when tracing is off).
    """
    settings = settings if settings is not None else load_settings()
    configure_logging(settings.gateway.log_level, settings.gateway.log_format)
    specs = dict(pipelines) if pipelines is not None else get_pipelines()
    metrics = Metrics()
    tracer = make_tracer(settings.section(TracingSettings), settings.source)  # None: off, nothing imported
    manager = FunctionManager(settings, specs, plan_functions(settings, specs),
                              observer=metrics if tracer is None else tracer.observe(metrics))
    metrics.track(manager.functions.values())
    auth = Authenticator(settings.auth.api_keys, settings.auth.keys)
    extra_routes = get_routes()
    openapi = build_openapi(specs.values(), extra_routes)
    max_body = int(settings.gateway.max_body_size)
    handlers = [pipeline_route(spec, manager, auth, max_body) for spec in specs.values()]
    handlers += runner_routes(manager, metrics, openapi, extra_routes)
    handlers += extra_routes

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if tracer is not None:
            tracer.start_in_loop()
        for result in pm.hook.startup(app=app):
            await await_me_maybe(result)
        # What startup made lives as long as the gateway: frozen, the garbage collector's full
        # collections stop scanning it (at thousands of requests a second they took a sixth of the
        # gateway's time). Models load after it, so one that scales to zero leaves nothing frozen.
        gc.freeze()
        await manager.start()
        sampling = asyncio.create_task(metrics.sample_forever(), name="warmgate-metrics")
        try:
            yield
        finally:
            sampling.cancel()
            for result in pm.hook.shutdown(app=app):
                await await_me_maybe(result)
            await manager.stop()
            if tracer is not None:
                await tracer.aclose()  # the last spans, bounded by the export timeout

    app = Litestar(
        route_handlers=handlers,
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=None,
        logging_config=None,
        lifespan=[lifespan],
        request_max_body_size=max_body,
        multipart_form_part_limit=MAX_FORM_PARTS,
        state=State({"settings": settings, "functions": manager, "metrics": metrics,
                     "pipelines": specs, "openapi": openapi, "auth": auth, "tracer": tracer}),
    )
    access_log = AccessLog(json_lines(settings.gateway.log_format)) if settings.gateway.access_log else None
    app.asgi_handler = wrap_asgi(app.asgi_handler, metrics, access_log, tracer)
    return app

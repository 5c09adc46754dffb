"""The bare server of the pipeline benches: the same runners on the same models, no gateway.

A plain Litestar app with one ``POST`` per pipeline path. Each handler does the work any server
of that pipeline must do, with the same code the gateway uses for it: read the body into the
spec's request struct (JSON, or the multipart form with its uploads), run the spec's
``prepare`` in a worker thread, call the runner (loaded as the local executor loads it,
``warmgate.core.executors.calling``) one request at a time, as a function with
``max_concurrency: 1`` does, and encode the result with msgspec. What it leaves out is the
gateway: middleware, auth, function resolution and queue, metrics, the overhead header.

Run by ``harness.py``: ``python bench/bare_pipelines.py FUNCTIONS_JSON PORT``, where the JSON
file lists ``{"pipeline", "model_id", "options"}`` objects.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.handlers import HTTPRouteHandler

from warmgate.core.executors.calling import load_runner, start_call
from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.http.decode import json_decoder, multipart_decoder
from warmgate.core.plugins import get_pipelines

__test__ = False  # never collected by pytest

_encoder = msgspec.json.Encoder()


def _route(spec: PipelineSpec, runner: Any, options: dict[str, Any]) -> HTTPRouteHandler:
    decode_json = json_decoder(spec) if spec.encoding == "json" else None
    decode_form = multipart_decoder(spec)
    one_at_a_time = asyncio.Lock()

    async def handle(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = decode_json(await request.body()) if decode_json is not None else await decode_form(request)
        if spec.prepare is not None:
            body = await asyncio.to_thread(spec.prepare, body, options)
        async with one_at_a_time:
            result = start_call(runner, body, spec.invoke)
            result = await result if inspect.isawaitable(result) else result
        return Response(_encoder.encode(result), media_type="application/json")

    return post(path=list(spec.paths), name=spec.name, status_code=200, request_max_body_size=None)(handle)


async def _load(functions: list[dict[str, Any]]) -> list[HTTPRouteHandler]:
    specs = get_pipelines()
    routes = []
    for function in functions:
        spec = specs[function["pipeline"]]
        assert spec.load is not None
        options = dict(function.get("options", {}))
        runner = await load_runner(spec.load, function["model_id"], dict(options))
        routes.append(_route(spec, runner, options))
    return routes


def bare_app(functions: list[dict[str, Any]]) -> Litestar:
    """Every function's model loaded before the app is built (so /health answers once warm)."""

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "OK"}

    return Litestar(route_handlers=[*asyncio.run(_load(functions)), health], openapi_config=None, logging_config=None)


def main(argv: list[str]) -> None:
    import uvicorn

    functions_json, port = argv
    uvicorn.run(bare_app(json.loads(Path(functions_json).read_text())), host="127.0.0.1", port=int(port),
                log_config=None, access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])

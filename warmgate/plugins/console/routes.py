"""``GET /console`` (the page), ``/console/static/{name}`` (its script and style sheet, shipped in
the package: no build step, no CDN), ``/console/api/forms`` (a form per pipeline, from its spec)
and ``/console/api/gateway`` (auth, ledger, host). Everything else the page reads is the
gateway's public API: ``/functions``, ``/pricing``, ``/usage``, ``/hardware/*``."""

from __future__ import annotations

import asyncio
import functools
from importlib import resources
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.params import FromPath

from warmgate.core.http.errors import NotFound
from warmgate.core.version import __version__
from warmgate.plugins.console.forms import PipelineForm, pipeline_form, pipeline_forms
from warmgate.plugins.console.host import HostInfo, host_info

__all__ = ["ROUTES"]

# Litestar appends "; charset=utf-8" to every text/* media type itself
_ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
_NO_CACHE = {"Cache-Control": "no-cache"}  # the page follows the installed package, not a stale copy
_encoder = msgspec.json.Encoder()


class FormList(msgspec.Struct):
    forms: list[PipelineForm]


class GatewayInfo(msgspec.Struct, kw_only=True):
    version: str
    auth: bool
    """Generate routes need ``Authorization: Bearer``: the console asks for a key."""
    keys: bool
    """Keys made with ``warmgate keys`` (balances) are on; ``/usage`` shows the caller's own."""
    ledger: bool
    """The usage ledger is on, so ``/usage`` has totals."""
    host: HostInfo


@functools.cache
def _asset(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def _json(value: Any) -> Response[bytes]:
    return Response(_encoder.encode(value), media_type="application/json", headers=_NO_CACHE)


@get(["/console", "/console/"], sync_to_thread=False, include_in_schema=False, opt={"index": "console"})
def console_page() -> Response[bytes]:
    return Response(_asset("console.html"), media_type="text/html", headers=_NO_CACHE)


@get("/console/static/{name:str}", sync_to_thread=False, include_in_schema=False)
def console_asset(name: FromPath[str]) -> Response[bytes]:
    if name not in _ASSETS:
        raise NotFound(f"no console file {name!r}; there are: console.js, console.css")
    return Response(_asset(name), media_type=_ASSETS[name], headers=_NO_CACHE)


@get(["/console/api/forms", "/console/api/forms/"], sync_to_thread=False, include_in_schema=False)
def forms(request: Request[Any, Any, Any]) -> Response[bytes]:
    return _json(FormList(forms=pipeline_forms(request.app.state.pipelines)))


@get(["/console/api/forms/{pipeline:str}", "/console/api/forms/{pipeline:str}/"], sync_to_thread=False,
     include_in_schema=False)
def form(request: Request[Any, Any, Any], pipeline: FromPath[str]) -> Response[bytes]:
    specs = request.app.state.pipelines
    spec = specs.get(pipeline)
    if spec is None or spec.serves:
        known = ", ".join(sorted(name for name, s in specs.items() if not s.serves)) or "none"
        raise NotFound(f"no pipeline {pipeline!r} has a form; pipelines: {known}")
    return _json(pipeline_form(spec))


@get(["/console/api/gateway", "/console/api/gateway/"], include_in_schema=False)
async def gateway(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = request.app.state
    settings = state.settings
    return _json(GatewayInfo(version=__version__, auth=state.auth.enabled, keys=settings.auth.keys,
                             ledger=getattr(state, "ledger", None) is not None,
                             host=await asyncio.to_thread(host_info)))


ROUTES = (console_page, console_asset, forms, form, gateway)

"""Live video: ``POST /live-video-to-video`` over Livepeer's trickle protocol, sessions on
channels the gateway hosts (``/live/sessions``, trickle at ``/ai/trickle``), and live pipelines
as plugins (``register_live_pipelines``); ``noop`` is built in. A built-in plugin."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from warmgate.core.hookspecs import hookimpl
from warmgate.plugins.live.processor import NoopProcessor
from warmgate.plugins.live.routes import ROUTES, LiveSessions
from warmgate.plugins.live.settings import LiveSettings
from warmgate.plugins.live.trickle import TrickleServer


@hookimpl
def register_settings(register: Any) -> None:
    register(LiveSettings)


@hookimpl
def register_routes(register: Any) -> None:
    for route in ROUTES:
        register(route)


@hookimpl
def register_live_pipelines(register: Any) -> None:
    register("noop", NoopProcessor)


@hookimpl
def startup(app: Any) -> None:
    app.state.trickle = TrickleServer()
    app.state.live = LiveSessions(app, app.state.settings)
    app.state.trickle_sweeper = asyncio.get_running_loop().create_task(app.state.trickle.sweep_forever())


@hookimpl
def health(app: Any) -> str | None:
    """LOADING while a session loads its pipeline, OK while sessions run; finished sessions
    (failed ones included: ``GET /live/sessions`` shows their error) leave it to the functions."""
    live = getattr(app.state, "live", None)
    states = {s.state for s in live.running()} if live is not None else set()
    return "LOADING" if "LOADING" in states else "OK" if states else None


@hookimpl
async def drain(app: Any) -> None:
    """Sessions read their hosted channels over HTTP from this very server: stop them and close
    the channels, so those long polls (and callers' reads) end before the server waits on them."""
    await app.state.live.stop_all()
    for name in list(app.state.trickle.channels):
        app.state.trickle.close(name)


@hookimpl
async def shutdown(app: Any) -> None:
    await app.state.live.stop_all()
    app.state.trickle_sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await app.state.trickle_sweeper
    for name in list(app.state.trickle.channels):
        app.state.trickle.close(name)

"""``POST /live-video-to-video`` (the runner's contract: the caller owns the trickle channels),
``POST /live/sessions`` (warmgate hosts the channels and returns where to publish and read),
``GET /live/sessions``, ``DELETE /live/sessions/{id}``, and the trickle server at ``/ai/trickle``."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, Response, asgi, delete, get, post
from litestar.params import FromPath
from litestar.types import Receive, Scope, Send

from warmgate.core.decode import json_body
from warmgate.core.errors import NotFound
from warmgate.plugins.live.processor import get_live_pipelines, parse_params

if TYPE_CHECKING:
    from warmgate.plugins.live.session import LiveSession

__all__ = ["ROUTES", "LiveSessions"]

DEFAULT_PIPELINE = "noop"


class LiveVideoToVideoParams(msgspec.Struct, kw_only=True):
    subscribe_url: str
    publish_url: str
    control_url: str = ""
    events_url: str = ""
    model_id: str = ""
    params: dict[str, Any] = {}
    gateway_request_id: str = ""
    manifest_id: str = ""
    stream_id: str = ""


class LiveVideoToVideoResponse(msgspec.Struct, kw_only=True):
    subscribe_url: str
    publish_url: str
    control_url: str = ""
    events_url: str = ""
    request_id: str = ""
    manifest_id: str = ""


class HostedSessionRequest(msgspec.Struct, kw_only=True):
    model_id: str = ""
    params: dict[str, Any] = {}


class SessionInfo(msgspec.Struct, kw_only=True):
    id: str
    pipeline: str
    state: str
    frames_in: int
    frames_out: int
    publish_url: str
    subscribe_url: str
    control_url: str
    events_url: str


class LiveSessions:
    """The gateway's running sessions; finished ones are forgotten when the next starts."""

    def __init__(self) -> None:
        self.sessions: dict[str, LiveSession] = {}

    def start(self, session_id: str, model_id: str, params: dict[str, Any], **urls: str) -> LiveSession:
        size = parse_params(params)
        pipelines = get_live_pipelines()
        name = model_id or DEFAULT_PIPELINE
        if name not in pipelines:
            raise NotFound(f"live pipeline {name!r} is not installed; installed: {', '.join(sorted(pipelines))}")
        from warmgate.plugins.live.session import LiveSession  # PyAV, numpy and aiohttp: only for a session

        for finished in [key for key, s in self.sessions.items() if s.done]:
            del self.sessions[finished]
        session = LiveSession(session_id, name, pipelines[name](), params, size, **urls)
        self.sessions[session_id] = session
        session.start()
        return session

    async def stop_all(self) -> None:
        for session in list(self.sessions.values()):
            await session.stop()


def _json(value: Any) -> Response[bytes]:
    return Response(msgspec.json.encode(value), media_type="application/json")


@post("/live-video-to-video", tags=["generate"], summary="Live Video To Video", status_code=200)
async def live_video_to_video(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = json_body(await request.body(), LiveVideoToVideoParams)
    session_id = body.manifest_id or body.gateway_request_id or secrets.token_hex(8)
    request.app.state.live.start(session_id, body.model_id, body.params, subscribe_url=body.subscribe_url,
                                 publish_url=body.publish_url, control_url=body.control_url,
                                 events_url=body.events_url)
    return _json(LiveVideoToVideoResponse(subscribe_url=body.subscribe_url, publish_url=body.publish_url,
                                          control_url=body.control_url, events_url=body.events_url,
                                          request_id=body.gateway_request_id, manifest_id=session_id))


@post("/live/sessions", tags=["live"], summary="Start a live session on channels warmgate hosts", status_code=200)
async def start_hosted_session(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Creates the four channels on the gateway's trickle server and answers with the caller's
    side: ``publish_url`` (send MPEG-TS there), ``subscribe_url`` (read the output),
    ``control_url`` (post params updates), ``events_url`` (read status and errors)."""
    body = json_body(await request.body(), HostedSessionRequest)
    parse_params(body.params)  # a bad size is a 422 before any channel exists
    trickle = request.app.state.trickle
    session_id = secrets.token_hex(8)
    base = f"{str(request.base_url).rstrip('/')}/ai/trickle/{session_id}"
    names = {"in": session_id, "out": f"{session_id}-out", "control": f"{session_id}-control",
             "events": f"{session_id}-events"}
    trickle.create(names["in"], "video/MP2T")
    trickle.create(names["out"], "video/MP2T")
    trickle.create(names["control"], "application/json")
    trickle.create(names["events"], "application/json")
    try:
        session = request.app.state.live.start(session_id, body.model_id, body.params, subscribe_url=base,
                                               publish_url=f"{base}-out", control_url=f"{base}-control",
                                               events_url=f"{base}-events")
    except Exception:
        for name in names.values():
            trickle.close(name)
        raise
    return _json(_info(session, base))


@get("/live/sessions", tags=["live"], summary="Live sessions", sync_to_thread=False)
def list_sessions(request: Request[Any, Any, Any]) -> Response[bytes]:
    base = f"{str(request.base_url).rstrip('/')}/ai/trickle"
    return _json({"sessions": [_info(s, f"{base}/{s.id}") for s in request.app.state.live.sessions.values()]})


@delete("/live/sessions/{session_id:str}", tags=["live"], summary="Stop a live session", status_code=200)
async def stop_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[bytes]:
    session = request.app.state.live.sessions.get(session_id)
    if session is None:
        raise NotFound(f"no live session {session_id!r}")
    await session.stop()
    return _json({"id": session_id, "state": session.state})


@asgi("/ai/trickle", is_mount=True, copy_scope=True, name="trickle")
async def trickle_mount(scope: Scope, receive: Receive, send: Send) -> None:
    """Channels are created by sessions (autocreate is off, as in go-livepeer); their random
    names are the capability to use them."""
    await scope["app"].state.trickle(scope, receive, send)


def _info(session: LiveSession, base: str) -> SessionInfo:
    return SessionInfo(id=session.id, pipeline=session.pipeline, state=session.state, frames_in=session.frames_in,
                       frames_out=session.frames_out, publish_url=base, subscribe_url=f"{base}-out",
                       control_url=f"{base}-control", events_url=f"{base}-events")


ROUTES = [live_video_to_video, start_hosted_session, list_sessions, stop_session, trickle_mount]

"""``POST /live-video-to-video`` (the runner's contract: the caller owns the trickle channels),
``POST /live/sessions`` (warmgate hosts the channels and returns where to publish and read),
``GET /live/sessions``, ``DELETE /live/sessions/{id}``, and the trickle server at ``/ai/trickle``."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote

import msgspec
from litestar import Request, Response, asgi, delete, get, post
from litestar.params import FromPath
from litestar.types import Receive, Scope, Send

from warmgate.core.functions.demo import ensure_demo_model
from warmgate.core.http.auth import Caller
from warmgate.core.http.decode import json_body
from warmgate.core.http.errors import CapacityError, ClientError, NotFound, RequestValidationError
from warmgate.core.settings import Settings
from warmgate.plugins.live.metering import LiveMeter
from warmgate.plugins.live.pipelines import LIVE_PIPELINE, LivePipeline, get_live_pipelines, live_function_name
from warmgate.plugins.live.processor import parse_params
from warmgate.plugins.live.settings import LiveSettings

if TYPE_CHECKING:
    from warmgate.plugins.live.session import LiveSession

__all__ = ["ROUTES", "LiveSessions"]

DEFAULT_PIPELINE = "noop"
TRICKLE_MOUNT = "/ai/trickle"


def _doc(description: str) -> msgspec.Meta:
    return msgspec.Meta(description=description)


class LiveVideoToVideoParams(msgspec.Struct, kw_only=True):
    """The runner spec's request (descriptions as it has them)."""

    subscribe_url: Annotated[str, _doc("Source URL of the incoming stream to subscribe to.")]
    publish_url: Annotated[str, _doc("Destination URL of the outgoing stream to publish.")]
    control_url: Annotated[str, _doc("URL for subscribing via Trickle protocol for updates in the live "
                                     "video-to-video generation params.")] = ""
    events_url: Annotated[str, _doc("URL for publishing events via Trickle protocol for pipeline status "
                                    "and logs.")] = ""
    model_id: Annotated[str, _doc("Name of the pipeline to run in the live video to video job (not a "
                                  "Hugging Face model id).")] = ""
    params: Annotated[dict[str, Any], _doc("Initial parameters for the pipeline.")] = {}
    gateway_request_id: Annotated[str, _doc("The ID of the Gateway request (for logging purposes).")] = ""
    manifest_id: Annotated[str, _doc("The manifest ID from the orchestrator (for logging purposes).")] = ""
    stream_id: Annotated[str, _doc("The Stream ID (for logging purposes).")] = ""


class LiveVideoToVideoResponse(msgspec.Struct, kw_only=True):
    """Response model for live video-to-video generation."""

    subscribe_url: Annotated[str, _doc("Source URL of the incoming stream to subscribe to")]
    publish_url: Annotated[str, _doc("Destination URL of the outgoing stream to publish to")]
    control_url: Annotated[str, _doc("URL for updating the live video-to-video generation")] = ""
    events_url: Annotated[str, _doc("URL for subscribing to events for pipeline status and logs")] = ""
    request_id: Annotated[str, _doc("The ID generated for this request")] = ""
    manifest_id: Annotated[str, _doc("Orchestrator manifest ID for this request")] = ""


class HostedSessionRequest(msgspec.Struct, kw_only=True):
    model_id: str = ""
    params: dict[str, Any] = {}


class SessionInfo(msgspec.Struct, kw_only=True):
    """A live session as ``GET /live/sessions`` shows it (``LiveSession.info``); times are unix ms."""

    id: str
    pipeline: str
    state: str
    params: dict[str, Any]
    width: int
    height: int
    started: int | None
    frames_in: int
    frames_out: int
    frames_dropped: int
    fps_in: float
    fps_out: float
    latency_ms: float | None
    last_error: str | None
    last_error_time: int | None
    units: int
    wei: int


class HostedSession(SessionInfo, kw_only=True):
    """A session on channels the gateway hosts: where the caller publishes, reads, controls and listens."""

    publish_url: str
    subscribe_url: str
    control_url: str
    events_url: str


class SessionList(msgspec.Struct):
    sessions: list[SessionInfo]


class StoppedSession(msgspec.Struct):
    id: str
    state: str


class LiveSessions:
    """The gateway's sessions: running ones, and the last ``KEEP_FINISHED`` that ended (with
    their last error) for ``GET /live/sessions``."""

    KEEP_FINISHED = 20

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.sessions: dict[str, LiveSession] = {}
        self.owners: dict[str, str | None] = {}
        self.pipelines = get_live_pipelines()
        self._starting: set[str] = set()

    def running(self) -> list[LiveSession]:
        return [s for s in self.sessions.values() if not s.done]

    async def start(self, session_id: str, model_id: str, params: dict[str, Any], caller: Caller | None, *,
                    on_end: Callable[[LiveSession], None] | None = None, hosted: bool = False,
                    **urls: str) -> LiveSession:
        size = parse_params(params)
        name = model_id or DEFAULT_PIPELINE
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            # a 400, as for every Livepeer route's unknown model_id (the ai-runner's answer)
            raise ClientError(f"model {name!r} is not served for pipeline 'live-video-to-video' (no such live "
                              f"pipeline is installed); available: {', '.join(sorted(self.pipelines))}")
        if caller is not None:
            caller.check_allowed(live_function_name(name), pipeline=LIVE_PIPELINE)
        live = self.settings.section(LiveSettings)
        if len(self.running()) + len(self._starting) >= live.max_sessions:
            raise CapacityError(f"{live.max_sessions} live sessions are running (live.max_sessions); try later")
        if session_id in self._starting or (session_id in self.sessions and not self.sessions[session_id].done):
            raise ClientError(f"live session {session_id!r} is already running")
        self._starting.add(session_id)  # taken until it runs: the awaits below let other starts in
        try:
            key = caller.key if caller is not None else None
            meter = LiveMeter(self.app, self.settings, session_id, name, size.width, size.height, key)
            await meter.hold()  # 402 now, not after the first segment, when the key cannot pay
            try:
                processor = pipeline.factory(**await self._options(pipeline))
            except Exception:
                await meter.bill(0, status=500)
                raise
        finally:
            self._starting.discard(session_id)
        from warmgate.plugins.live.session import LiveSession, SessionOptions  # PyAV and aiohttp: for sessions

        self._forget_finished()
        session = LiveSession(
            session_id, name, processor, params, size,
            options=SessionOptions(status_interval=live.status_interval, input_timeout=live.input_timeout,
                                   max_lag=live.max_lag, input_start=0 if hosted else -2),
            meter=meter if meter.priced else None, on_end=on_end, **urls)
        self.sessions[session_id] = session
        self.owners[session_id] = key
        session.start()
        return session

    async def _options(self, pipeline: LivePipeline) -> dict[str, Any]:
        """The operator's options; under the demo profile, the pipeline's tiny model."""
        options = dict(self.settings.section(LiveSettings).pipelines.get(pipeline.name, {}))
        if self.settings.profile == "demo" and pipeline.demo is not None and "model_id" not in options:
            root = self.settings.gateway.cache_path / "demo"
            options["model_id"] = str(await asyncio.to_thread(ensure_demo_model, pipeline.demo, root))
        return options

    def _forget_finished(self) -> None:
        finished = [key for key, s in self.sessions.items() if s.done]
        for key in finished[:max(0, len(finished) - self.KEEP_FINISHED + 1)]:
            del self.sessions[key]
            self.owners.pop(key, None)

    def visible_to(self, caller: Caller | None) -> list[LiveSession]:
        """A key sees the sessions it started; an operator (or no auth) sees them all."""
        if caller is None or caller.key is None:
            return list(self.sessions.values())
        return [s for s in self.sessions.values() if self.owners.get(s.id) == caller.key]

    async def stop_all(self) -> None:
        for session in list(self.sessions.values()):
            await session.stop()


async def _caller(request: Request[Any, Any, Any]) -> Caller | None:
    auth = request.app.state.auth
    return await auth(request.scope, request.app) if auth.enabled else None


def _json(value: Any) -> Response[bytes]:
    return Response(msgspec.json.encode(value), media_type="application/json")


_SESSION_ERRORS = (400, 401, 402, 403, 503)
"""Unknown pipeline or a running session id (400), auth (401, 403), the key's balance (402),
``live.max_sessions`` reached (503)."""


@post("/live-video-to-video", tags=["generate"], summary="Live Video To Video", status_code=200,
      operation_id="genLiveVideoToVideo",
      description="Apply transformations to a live video streamed to the returned endpoints.",
      opt={"request": LiveVideoToVideoParams, "response": LiveVideoToVideoResponse, "errors": _SESSION_ERRORS})
async def live_video_to_video(request: Request[Any, Any, Any]) -> Response[bytes]:
    caller = await _caller(request)
    body = json_body(await request.body(), LiveVideoToVideoParams)
    for field in ("subscribe_url", "publish_url", "control_url", "events_url"):
        url = getattr(body, field)
        if url and not url.startswith(("http://", "https://")):
            raise RequestValidationError.single(["body", field], f"Expected an http(s) URL; got {url!r}", "value_error")
    session_id = body.manifest_id or body.gateway_request_id or secrets.token_hex(8)
    await request.app.state.live.start(session_id, body.model_id, body.params, caller,
                                       subscribe_url=body.subscribe_url, publish_url=body.publish_url,
                                       control_url=body.control_url, events_url=body.events_url)
    return _json(LiveVideoToVideoResponse(subscribe_url=body.subscribe_url, publish_url=body.publish_url,
                                          control_url=body.control_url, events_url=body.events_url,
                                          request_id=body.gateway_request_id, manifest_id=session_id))


@post("/live/sessions", tags=["live"], summary="Start a live session on channels warmgate hosts", status_code=200,
      opt={"request": HostedSessionRequest, "response": HostedSession, "errors": _SESSION_ERRORS})
async def start_hosted_session(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Creates the four channels on the gateway's trickle server and answers with the caller's
    side: ``publish_url`` (send MPEG-TS there), ``subscribe_url`` (read the output),
    ``control_url`` (post params updates), ``events_url`` (read status and errors)."""
    caller = await _caller(request)
    body = json_body(await request.body(), HostedSessionRequest)
    parse_params(body.params)  # a bad size is a 422 before any channel exists
    trickle = request.app.state.trickle
    session_id = secrets.token_hex(8)
    base = f"{str(request.base_url).rstrip('/')}{TRICKLE_MOUNT}/{session_id}"
    names = {"in": session_id, "out": f"{session_id}-out", "control": f"{session_id}-control",
             "events": f"{session_id}-events"}
    trickle.create(names["in"], "video/MP2T")
    trickle.create(names["out"], "video/MP2T")
    trickle.create(names["control"], "application/json")
    trickle.create(names["events"], "application/json")

    def close_channels() -> None:  # closed channels linger a few seconds for readers still behind
        for name in names.values():
            if name in trickle.channels:
                trickle.close(name)
    try:
        session = await request.app.state.live.start(
            session_id, body.model_id, body.params, caller, on_end=lambda _: close_channels(), hosted=True,
            subscribe_url=base, publish_url=f"{base}-out", control_url=f"{base}-control",
            events_url=f"{base}-events")
    except Exception:
        close_channels()
        raise
    return _json(_hosted(session, base))


@get("/live/sessions", tags=["live"], summary="Live sessions", opt={"response": SessionList, "errors": (401,)})
async def list_sessions(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Running sessions and the last few that ended: state, fps in and out, processing latency,
    last error, units and wei billed so far."""
    caller = await _caller(request)
    return _json({"sessions": [s.info() for s in request.app.state.live.visible_to(caller)]})


@delete("/live/sessions/{session_id:str}", tags=["live"], summary="Stop a live session", status_code=200,
        opt={"response": StoppedSession, "errors": (401, 404)})
async def stop_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[bytes]:
    caller = await _caller(request)
    session = next((s for s in request.app.state.live.visible_to(caller) if s.id == session_id), None)
    if session is None:
        raise NotFound(f"no live session {session_id!r}")
    await session.stop()
    return _json({"id": session_id, "state": session.state})


@asgi(TRICKLE_MOUNT, is_mount=True, copy_scope=False, name="trickle")
async def trickle_mount(scope: Scope, receive: Receive, send: Send) -> None:
    """Channels are created by sessions (autocreate is off, as in go-livepeer); their random
    names are the capability to use them. Litestar cuts the mount prefix off the request's own
    scope (and adds a slash); the path as sent is put back there, for the access log, and the
    trickle server gets a copy with the channel path."""
    channel_path = scope["path"]
    raw_path = scope.get("raw_path")
    scope["path"] = unquote(raw_path.decode("latin-1")) if raw_path else TRICKLE_MOUNT + channel_path
    await scope["app"].state.trickle({**scope, "path": channel_path}, receive, send)


def _hosted(session: LiveSession, base: str) -> dict[str, Any]:
    """The caller's side of a hosted session: where to publish, read, control and listen."""
    return {**session.info(), "publish_url": base, "subscribe_url": f"{base}-out", "control_url": f"{base}-control",
            "events_url": f"{base}-events"}


ROUTES = [live_video_to_video, start_hosted_session, list_sessions, stop_session, trickle_mount]

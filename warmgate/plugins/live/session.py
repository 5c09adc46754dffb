"""One live-video-to-video session: trickle in, frames through a ``FrameProcessor``, trickle out.

Five loops, as the ai-runner has them: the input subscriber feeds MPEG-TS segments to the
decoder; a media thread decodes, caps the rate at 24 fps, crops to the params' size, hands each
frame to the processor (on the event loop), passes audio through and encodes into 2 s segments
whose bytes stream out as they are made; the output publisher posts them (each segment billed
when complete); the control subscriber applies params updates (keepalives skipped); the events
publisher sends a status event every ``status_interval`` seconds and an error event when
something fails. The session ends when the input channel closes, when it is stopped, when the
input sends nothing for ``input_timeout`` seconds, or on an error; its last status says OFFLINE
(or ERROR).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import av
import msgspec
import structlog

from warmgate.core import tracing
from warmgate.plugins.live.media import FrameRateCap, LateFrames, SegmentDecoder, SegmentEncoder, cover_crop
from warmgate.plugins.live.metering import LiveMeter
from warmgate.plugins.live.pipelines import FrameProcessor
from warmgate.plugins.live.processor import LiveParams
from warmgate.plugins.live.trickle.client import SegmentWriter, TrickleError, TricklePublisher, TrickleSubscriber

__all__ = ["LiveSession", "SessionOptions"]

_log = structlog.get_logger("warmgate.live")
MAX_OUTPUT_FAILURES = 3


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


@dataclass(frozen=True, kw_only=True)
class SessionOptions:
    status_interval: float = 10.0
    input_timeout: float = 60.0
    max_lag: float = 0.5
    input_start: int = -2
    """The first input segment: -2, the live edge (the runner's choice, for a caller's channel
    that may have run for a while); 0 for a channel the gateway just made, so nothing a fast
    publisher sent before the session subscribed is lost."""


class FrameRate:
    """Frames a second over the last ``window`` seconds; ``tick`` from any thread."""

    def __init__(self, window: float = 5.0) -> None:
        self._window = window
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now: float) -> None:
        self._times.append(now)

    def per_second(self, now: float) -> float:
        while self._times and self._times[0] < now - self._window:
            self._times.popleft()
        return round(len(self._times) / self._window, 2)


async def _first_failure(*coroutines: Any) -> None:
    """Run them together until all are done; the first to fail cancels the others."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _StreamedSegment:
    """One output segment as the muxer writes it, handed to the event loop chunk by chunk."""

    def __init__(self, put: Any) -> None:
        self._put = put
        put(("open", None))

    def write(self, data: bytes) -> None:
        self._put(("data", data))

    def close(self) -> None:
        self._put(("close", None))


class LiveSession:
    def __init__(self, session_id: str, pipeline: str, processor: FrameProcessor, params: dict[str, Any],
                 size: LiveParams, *, subscribe_url: str, publish_url: str, control_url: str = "",
                 events_url: str = "", options: SessionOptions | None = None, meter: LiveMeter | None = None,
                 on_end: Any = None) -> None:
        self.id = session_id
        self.pipeline = pipeline
        self.processor = processor
        self.params = dict(params)
        self.size = size
        self.urls = {"subscribe_url": subscribe_url, "publish_url": publish_url, "control_url": control_url,
                     "events_url": events_url}
        self.options = options or SessionOptions()
        self.meter = meter
        self._on_end = on_end
        self.state = "LOADING"
        self.started = time.time()
        self.state_changed = self.started
        self.frames_in = 0
        self.frames_out = 0
        self.frames_dropped = 0
        """Frames skipped because the pipeline fell over ``max_lag`` behind the input."""
        self.fps_in = FrameRate()
        self.fps_out = FrameRate()
        self.latency: float | None = None
        """Seconds from a frame leaving the decoder to its encoded bytes (moving average)."""
        self.last_input: float | None = None
        self.last_output: float | None = None
        self.last_params_update: float | None = None
        self.last_error: str | None = None
        self.last_error_time: float | None = None
        self._params_sent = False
        self._output: asyncio.Queue[tuple[str, bytes | None]] = asyncio.Queue()
        self._events: TricklePublisher | None = None
        self._events_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._span = tracing.branch(f"live session {pipeline}", {"warmgate.live.session": session_id,
                                                                  "warmgate.live.pipeline": pipeline})
        """The session's span (when the request that started it is traced), with its milestones as events."""

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"live {self.id}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.state == "LOADING":  # stopped before it began: it never ran to say so itself
            self._set_state("OFFLINE")

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def _run(self) -> None:
        if self.urls["events_url"]:
            self._events = TricklePublisher(self.urls["events_url"], "application/json")
        status = asyncio.ensure_future(self._status_loop())
        control = asyncio.ensure_future(self._control_loop()) if self.urls["control_url"] else None
        media: asyncio.Future[None] | None = None
        try:  # everything from here on is undone in ``finally``, a cancellation included
            await self._trace("runner_receive_stream_request")
            await self.processor.load_model(**self.params)
            self._set_state("ONLINE")
            late = LateFrames(self.options.max_lag)
            decoder = SegmentDecoder(arrivals=late)
            loop = asyncio.get_running_loop()
            media = loop.run_in_executor(None, self._media, decoder, late, loop)
            await _first_failure(self._decode(decoder, media), self._publish_loop())
            self._set_state("OFFLINE")
        except asyncio.CancelledError:
            self._set_state("OFFLINE")
            raise
        except Exception as exc:
            self.last_error, self.last_error_time = str(exc) or type(exc).__name__, time.time()
            self._set_state("ERROR")
            _log.warning("live_session_failed", session=self.id, error=self.last_error, exc_info=True)
            if self._span is not None:
                self._span.root.fail(self.last_error)
                self._span.root.event("error", {"message": self.last_error})
            await self._emit({"type": "error", "pipeline": self.pipeline, "message": self.last_error,
                              "time": _ms(self.last_error_time)})
        finally:
            self._stop.set()
            loops = [task for task in (status, control) if task is not None]
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if media is not None:  # the media thread notices _stop at its next frame
                with contextlib.suppress(BaseException):
                    await asyncio.shield(media)
            if self.meter is not None:
                await asyncio.shield(self.meter.bill(0, status=500 if self.state == "ERROR" else 200))
            with contextlib.suppress(Exception):
                await self.processor.stop()
            await self._emit(self._status())
            if self._events is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._events.close())
            _log.info("live_session_ended", session=self.id, state=self.state, frames_in=self.frames_in,
                      frames_out=self.frames_out)
            if self._span is not None:
                self._span.root.attributes.update({"warmgate.live.frames_in": self.frames_in,
                                                   "warmgate.live.frames_out": self.frames_out})
                self._span.finish()
            if self._on_end is not None:
                self._on_end(self)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state, self.state_changed = state, time.time()

    # -- loops -----------------------------------------------------------------------------

    async def _decode(self, decoder: SegmentDecoder, media: asyncio.Future[None]) -> None:
        try:
            await self._input_loop(decoder)
        finally:
            decoder.end()  # the media thread drains what is left and ends the output
        await media

    async def _input_loop(self, decoder: SegmentDecoder) -> None:
        timeout = self.options.input_timeout
        async with TrickleSubscriber(self.urls["subscribe_url"], start=self.options.input_start) as subscriber:
            while not self._stop.is_set():
                try:
                    async with asyncio.timeout(timeout):
                        segment = await subscriber.next()
                        if segment is None:
                            return
                        if self.last_input is None:
                            asyncio.ensure_future(self._trace("runner_receive_first_ingest_segment"))
                        async for chunk in segment:
                            decoder.feed(chunk)
                            self.last_input = time.time()
                except TimeoutError:
                    raise TimeoutError(f"no input for {timeout:g} s; the publisher is gone") from None

    def _media(self, decoder: SegmentDecoder, late: LateFrames, loop: asyncio.AbstractEventLoop) -> None:
        """The media thread: decode, cap, crop, process (on the loop), encode; audio passes."""
        width, height = self.size.width, self.size.height
        put = self._output.put_nowait
        encoder: SegmentEncoder | None = None
        cap, first = FrameRateCap(24), None
        try:
            for frame in decoder.frames():
                if self._stop.is_set():
                    break
                if encoder is None:
                    encoder = SegmentEncoder(width, height, lambda: _StreamedSegment(
                        lambda item: loop.call_soon_threadsafe(put, item)), audio=decoder.has_audio)
                seconds = float(frame.time or 0.0)
                if isinstance(frame, av.AudioFrame):
                    if first is not None and seconds >= first:
                        encoder.encode_audio(frame, seconds - first)
                    continue
                self.frames_in += 1
                decoded = time.time()
                self.fps_in.tick(decoded)
                first = seconds if first is None else first
                if not cap.keep(seconds - first):
                    continue
                if late.late(seconds, time.monotonic()) and decoder.video_waiting():
                    self.frames_dropped += 1
                    continue
                image = cover_crop(frame, width, height)
                result = asyncio.run_coroutine_threadsafe(self.processor.process_video(image), loop).result()
                encoder.encode(result, seconds - first)
                self.frames_out += 1
                self.last_output = time.time()
                self.fps_out.tick(self.last_output)
                took = self.last_output - decoded
                self.latency = took if self.latency is None else 0.9 * self.latency + 0.1 * took
        finally:
            if encoder is not None:
                encoder.close()
            loop.call_soon_threadsafe(put, ("end", None))

    async def _close_segment(self, writer: SegmentWriter, failures: int) -> int:
        """End an output segment; the consecutive failures so far. A segment whose POST failed
        is lost and the next goes out on a fresh connection, as go-livepeer's publisher does;
        ``MAX_OUTPUT_FAILURES`` in a row, or a channel that is gone (404), end the session."""
        try:
            status = await writer.close()
        except aiohttp.ClientError as exc:
            failures += 1
            _log.warning("live_output_segment_failed", session=self.id, seq=writer.seq, error=str(exc) or repr(exc))
            if failures >= MAX_OUTPUT_FAILURES:
                raise TrickleError(f"publishing the output failed {failures} times in a row: {exc}") from exc
            return failures
        if status == 404 or writer.channel_closed:
            raise TrickleError(f"the output channel {self.urls['publish_url']} is gone")
        return 0

    async def _publish_loop(self) -> None:
        billed = publisher_segments = failures = 0
        async with TricklePublisher(self.urls["publish_url"], "video/MP2T") as publisher:
            writer = None
            while (item := await self._output.get())[0] != "end":
                kind, data = item
                if kind == "open":
                    if self.meter is not None:
                        await self.meter.hold()
                    if publisher_segments == 0:
                        await self._trace("runner_send_first_processed_segment")
                    publisher_segments += 1
                    writer = await publisher.next()
                elif kind == "data" and writer is not None:
                    await writer.write(data or b"")
                elif kind == "close" and writer is not None:
                    failures = await self._close_segment(writer, failures)
                    writer = None
                    if self.meter is not None:
                        frames, billed = self.frames_out - billed, self.frames_out
                        await self.meter.bill(frames)

    async def _control_loop(self) -> None:
        with contextlib.suppress(Exception):  # a control channel that goes away ends updates only
            async with TrickleSubscriber(self.urls["control_url"]) as subscriber:  # -2: the latest params too
                while (segment := await subscriber.next()) is not None:
                    body = await segment.read()
                    if not body:  # a publisher's preconnected segment that ended empty
                        continue
                    try:
                        update = json.loads(body)
                    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
                        reason = "is not JSON" if isinstance(exc, ValueError) else "is nested too deeply"
                        if self._span is not None:
                            self._span.root.event("error", {"message": f"control message {reason}"})
                        await self._emit({"type": "error", "pipeline": self.pipeline,
                                          "message": f"control message {reason}", "time": _ms(time.time())})
                        continue
                    if not isinstance(update, dict) or update == {"keep": "alive"}:
                        continue
                    await self.processor.update_params(update)
                    self.params, self.last_params_update, self._params_sent = update, time.time(), False
                    await self._emit(self._status())  # the new params are visible at once

    async def _status_loop(self) -> None:
        while True:
            await self._emit(self._status())
            await asyncio.sleep(self.options.status_interval)

    # -- events ----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What ``GET /live/sessions`` shows of it."""
        now = time.time()
        return {"id": self.id, "pipeline": self.pipeline, "state": self.state, "params": self.params,
                "width": self.size.width, "height": self.size.height, "started": _ms(self.started),
                "frames_in": self.frames_in, "frames_out": self.frames_out,
                "frames_dropped": self.frames_dropped, "fps_in": self.fps_in.per_second(now),
                "fps_out": self.fps_out.per_second(now),
                "latency_ms": None if self.latency is None else round(self.latency * 1000, 1),
                "last_error": self.last_error, "last_error_time": _ms(self.last_error_time),
                "units": self.meter.units if self.meter else 0, "wei": self.meter.wei if self.meter else 0}

    def _status(self) -> dict[str, Any]:
        now = time.time()
        params = None if self._params_sent else self.params
        self._params_sent = True  # sent once, then cleared, as the ai-runner does
        return {
            "type": "status", "pipeline": self.pipeline, "start_time": _ms(self.started), "state": self.state,
            "last_state_update_time": _ms(self.state_changed),
            "input_status": {"last_input_time": _ms(self.last_input), "fps": self.fps_in.per_second(now)},
            "inference_status": {
                "last_output_time": _ms(self.last_output), "fps": self.fps_out.per_second(now),
                "last_params_update_time": _ms(self.last_params_update), "last_params": params,
                "last_params_hash": hashlib.md5(json.dumps(self.params, sort_keys=True).encode()).hexdigest(),
                "last_error_time": _ms(self.last_error_time), "last_error": self.last_error, "restart_count": 0},
            "last_status_timestamp": _ms(now), "timestamp": _ms(now),
        }

    async def _emit(self, event: dict[str, Any], queue: str = "ai_stream_events") -> None:
        """One event segment, whole: shielded, so a loop cancelled mid-send does not leave an open
        segment that readers would wait on forever, and one at a time, in order."""
        if self._events is not None:
            await asyncio.shield(self._send_event(event, queue))

    async def _trace(self, kind: str) -> None:
        """A ``stream_trace`` event, as the ai-runner marks a stream's milestones (and an event of
        the session's span: the first segment in, the first segment out)."""
        if self._span is not None:
            self._span.root.event(kind)
        await self._emit({"type": kind, "timestamp": _ms(time.time())}, "stream_trace")

    async def _send_event(self, event: dict[str, Any], queue: str) -> None:
        assert self._events is not None
        envelope = {"event": event, "queue_event_type": queue}
        async with self._events_lock:
            with contextlib.suppress(Exception):  # events are best effort: the video goes on
                async with await self._events.next() as writer:
                    await writer.write(msgspec.json.encode(envelope))

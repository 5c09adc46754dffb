"""One live-video-to-video session: trickle in, frames through a ``FrameProcessor``, trickle out.

Five loops, as the ai-runner has them: the input subscriber feeds MPEG-TS segments to the
decoder; a media thread decodes, caps the rate at 24 fps, crops to the params' size, hands each
frame to the processor (on the event loop) and encodes the result into 2 s segments; the output
publisher posts each segment; the control subscriber applies params updates (keepalives
skipped); the events publisher sends a status event every ``status_interval`` seconds and an
error event when something fails. The session ends when the input channel closes, when it is
stopped, or on an error, and its last status says OFFLINE (or ERROR).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
import time
from typing import Any

import msgspec
import structlog

from warmgate.plugins.live.media import FrameRateCap, SegmentDecoder, SegmentEncoder, cover_crop
from warmgate.plugins.live.processor import FrameProcessor, LiveParams
from warmgate.trickle.client import TricklePublisher, TrickleSubscriber

__all__ = ["LiveSession"]

_log = structlog.get_logger("warmgate.live")


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


class LiveSession:
    def __init__(self, session_id: str, pipeline: str, processor: FrameProcessor, params: dict[str, Any],
                 size: LiveParams, *, subscribe_url: str, publish_url: str, control_url: str = "",
                 events_url: str = "", status_interval: float = 10.0) -> None:
        self.id = session_id
        self.pipeline = pipeline
        self.processor = processor
        self.params = dict(params)
        self.size = size
        self.urls = {"subscribe_url": subscribe_url, "publish_url": publish_url, "control_url": control_url,
                     "events_url": events_url}
        self.status_interval = status_interval
        self.state = "LOADING"
        self.started = time.time()
        self.state_changed = self.started
        self.frames_in = 0
        self.frames_out = 0
        self.last_input: float | None = None
        self.last_output: float | None = None
        self.last_params_update: float | None = None
        self.last_error: str | None = None
        self.last_error_time: float | None = None
        self._params_sent = False
        self._segments: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._events: TricklePublisher | None = None
        self._events_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"live {self.id}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def _run(self) -> None:
        if self.urls["events_url"]:
            self._events = TricklePublisher(self.urls["events_url"], "application/json")
        status = asyncio.ensure_future(self._status_loop())
        control = asyncio.ensure_future(self._control_loop()) if self.urls["control_url"] else None
        try:
            await self.processor.load_model(**self.params)
            self._set_state("ONLINE")
            decoder = SegmentDecoder()
            loop = asyncio.get_running_loop()
            media = loop.run_in_executor(None, self._media, decoder, loop)
            publish = asyncio.ensure_future(self._publish_loop())
            await self._input_loop(decoder)
            await media
            await publish
            self._set_state("OFFLINE")
        except asyncio.CancelledError:
            self._set_state("OFFLINE")
            raise
        except Exception as exc:
            self.last_error, self.last_error_time = f"{type(exc).__name__}: {exc}", time.time()
            self._set_state("ERROR")
            _log.warning("live_session_failed", session=self.id, error=self.last_error)
            await self._emit({"type": "error", "message": self.last_error, "time": _ms(self.last_error_time)})
        finally:
            self._stop.set()
            loops = [task for task in (status, control) if task is not None]
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.processor.stop()
            await self._emit(self._status())
            if self._events is not None:
                with contextlib.suppress(Exception):
                    await self._events.close()
            _log.info("live_session_ended", session=self.id, state=self.state, frames_in=self.frames_in,
                      frames_out=self.frames_out)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state, self.state_changed = state, time.time()

    # -- loops -----------------------------------------------------------------------------

    async def _input_loop(self, decoder: SegmentDecoder) -> None:
        try:
            async with TrickleSubscriber(self.urls["subscribe_url"]) as subscriber:
                while not self._stop.is_set() and (segment := await subscriber.next()) is not None:
                    async for chunk in segment:
                        decoder.feed(chunk)
                    self.last_input = time.time()
        finally:
            decoder.end()

    def _media(self, decoder: SegmentDecoder, loop: asyncio.AbstractEventLoop) -> None:
        """The media thread: decode, cap, crop, process (on the loop), encode."""
        width, height = self.size.width, self.size.height
        encoder = SegmentEncoder(width, height, lambda seg: loop.call_soon_threadsafe(self._segments.put_nowait, seg))
        cap, first = FrameRateCap(24), None
        try:
            for frame in decoder.frames():
                if self._stop.is_set():
                    break
                self.frames_in += 1
                seconds = float(frame.time or 0.0)
                first = seconds if first is None else first
                if not cap.keep(seconds - first):
                    continue
                image = cover_crop(frame, width, height)
                result = asyncio.run_coroutine_threadsafe(self.processor.process_video(image), loop).result()
                encoder.encode(result, seconds - first)
                self.frames_out += 1
                self.last_output = time.time()
        finally:
            encoder.close()
            loop.call_soon_threadsafe(self._segments.put_nowait, None)

    async def _publish_loop(self) -> None:
        async with TricklePublisher(self.urls["publish_url"], "video/MP2T") as publisher:
            while (segment := await self._segments.get()) is not None:
                async with await publisher.next() as writer:
                    await writer.write(segment)

    async def _control_loop(self) -> None:
        with contextlib.suppress(Exception):  # a control channel that goes away ends updates only
            async with TrickleSubscriber(self.urls["control_url"]) as subscriber:  # -2: the latest params too
                while (segment := await subscriber.next()) is not None:
                    body = await segment.read()
                    if not body:  # a publisher's preconnected segment that ended empty
                        continue
                    try:
                        update = json.loads(body)
                    except ValueError:
                        await self._emit({"type": "error", "message": "control message is not JSON"})
                        continue
                    if not isinstance(update, dict) or update == {"keep": "alive"}:
                        continue
                    await self.processor.update_params(update)
                    self.params, self.last_params_update, self._params_sent = update, time.time(), False

    async def _status_loop(self) -> None:
        while True:
            await self._emit(self._status())
            await asyncio.sleep(self.status_interval)

    # -- events ----------------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        now = time.time()
        elapsed = max(now - self.started, 1e-9)
        params = None if self._params_sent else self.params
        self._params_sent = True  # sent once, then cleared, as the ai-runner does
        return {
            "type": "status", "pipeline": self.pipeline, "start_time": _ms(self.started), "state": self.state,
            "last_state_update_time": _ms(self.state_changed),
            "input_status": {"last_input_time": _ms(self.last_input), "fps": round(self.frames_in / elapsed, 2)},
            "inference_status": {
                "last_output_time": _ms(self.last_output), "fps": round(self.frames_out / elapsed, 2),
                "last_params_update_time": _ms(self.last_params_update), "last_params": params,
                "last_params_hash": hashlib.md5(json.dumps(self.params, sort_keys=True).encode()).hexdigest(),
                "last_error_time": _ms(self.last_error_time), "last_error": self.last_error, "restart_count": 0},
            "last_status_timestamp": _ms(now), "timestamp": _ms(now),
        }

    async def _emit(self, event: dict[str, Any]) -> None:
        """One event segment, whole: shielded, so a loop cancelled mid-send does not leave an open
        segment that readers would wait on forever, and one at a time, in order."""
        if self._events is not None:
            await asyncio.shield(self._send_event(event))

    async def _send_event(self, event: dict[str, Any]) -> None:
        assert self._events is not None
        envelope = {"event": event, "queue_event_type": "ai_stream_events"}
        async with self._events_lock:
            with contextlib.suppress(Exception):  # events are best effort: the video goes on
                async with await self._events.next() as writer:
                    await writer.write(msgspec.json.encode(envelope))

"""Live video test kit: H.264 (+ Opus) MPEG-TS clips cut into trickle segments with PyAV, a
trickle publisher and readers for a session's channels, and decoding of what came out. For
live pipeline authors' tests and warmgate's own (and ``bench/live.py``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import av
import numpy as np

from warmgate.plugins.live.media import SegmentDecoder, SegmentEncoder, whole_segments
from warmgate.plugins.live.trickle.client import TricklePublisher, TrickleSubscriber

__all__ = ["clip", "decode", "publish", "read_events", "read_segments", "tone", "until_true"]


def tone(seconds: float, rate: int = 48000, chunk: int = 960) -> Iterator[tuple[av.AudioFrame, float]]:
    """Mono 440 Hz in ``chunk``-sample frames, with their start times."""
    for n in range(int(seconds * rate) // chunk):
        t = (np.arange(chunk) + n * chunk) / rate
        frame = av.AudioFrame.from_ndarray((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = rate
        yield frame, n * chunk / rate


def clip(seconds: float = 3, fps: int = 24, *, shade: int = 0, audio: bool = False, gop: float = 2.0,
         size: tuple[int, int] = (96, 64), frame: Callable[[int], np.ndarray] | None = None) -> list[bytes]:
    """Trickle segments (one per ``gop`` seconds) of flat ``shade`` frames, or ``frame(i)``."""
    segments: list[bytes] = []
    encoder = SegmentEncoder(*size, whole_segments(segments.append), fps=fps, audio=audio, gop_seconds=gop)
    sound = tone(seconds) if audio else iter(())
    pending = next(sound, None)
    for i in range(int(seconds * fps)):
        encoder.encode(frame(i) if frame else np.full((size[1], size[0], 3), shade, np.uint8), i / fps)
        while pending is not None and pending[1] < (i + 1) / fps:  # the audio of this frame's span
            encoder.encode_audio(*pending)
            pending = next(sound, None)
    encoder.close()
    return segments


def decode(segments: list[bytes]) -> tuple[list[av.VideoFrame], list[av.AudioFrame]]:
    """The video and audio frames of consecutive segments, decoded as one stream."""
    decoder = SegmentDecoder()
    for segment in segments:
        decoder.feed(segment)
    decoder.end()
    frames = list(decoder.frames())
    return [f for f in frames if isinstance(f, av.VideoFrame)], [f for f in frames if isinstance(f, av.AudioFrame)]


async def read_segments(url: str, count: int | None = None) -> list[bytes]:
    """A channel's segments from the first until it closes (or ``count`` non-empty ones)."""
    out: list[bytes] = []
    async with TrickleSubscriber(url, start=0) as subscriber:
        while (count is None or len(out) < count) and (segment := await subscriber.next()) is not None:
            if body := await segment.read():
                out.append(body)
    return out


def _ended(event: dict[str, Any]) -> bool:
    return event.get("state") in ("OFFLINE", "ERROR")


async def read_events(url: str, until: Callable[[dict[str, Any]], bool] = _ended) -> list[dict[str, Any]]:
    """Event envelopes from the first until ``until(event)`` (default: the session ended)."""
    events: list[dict[str, Any]] = []
    async with TrickleSubscriber(url, start=0) as subscriber:
        while (segment := await subscriber.next()) is not None:
            if body := await segment.read():
                events.append(json.loads(body))
                if until(events[-1]["event"]):
                    break
    return events


async def publish(url: str, segments: list[bytes], *, close: bool = True) -> TricklePublisher:
    """Post each segment; then close the channel (the input ends), unless ``close`` is false."""
    publisher = TricklePublisher(url)
    for segment in segments:
        async with await publisher.next() as writer:
            await writer.write(segment)
    if close:
        await publisher.close()
    return publisher


async def until_true(check: Callable[[], object], seconds: float = 30) -> None:
    """Poll ``check`` on the event loop; AssertionError after ``seconds``."""
    for _ in range(int(seconds * 20)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still false after {seconds} s: {check}")

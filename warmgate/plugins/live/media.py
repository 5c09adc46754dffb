"""Live video media on PyAV: MPEG-TS segments in, frames out, and frames back into segments,
the way Livepeer's ai-runner does it.

* ``SegmentDecoder``: trickle segments are concatenated into one stream (they are cut from one
  continuous TS) and demuxed by one ``av.open`` in a worker thread.
* ``cover_crop``: a frame scaled to cover ``width``×``height`` and centre-cropped to it.
* ``FrameRateCap``: drops frames that come sooner than ``1/max_fps`` after the last kept one.
* ``SegmentEncoder``: libx264 (superfast, zerolatency, no B-frames) into FFmpeg's segment muxer,
  a keyframe forced every ``gop_seconds`` so that each segment starts with one, time base 1/90000.
  A segment is handed over when the muxer closes it.
"""

from __future__ import annotations

import io
import math
import queue
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np

__all__ = ["TIME_BASE", "FrameRateCap", "SegmentDecoder", "SegmentEncoder", "cover_crop"]

TIME_BASE = Fraction(1, 90000)


class _Pipe(io.RawIOBase):
    """A blocking byte pipe: ``feed`` from one thread, PyAV ``read``s in another."""

    def __init__(self) -> None:
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._rest = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def feed(self, data: bytes | None) -> None:
        self._chunks.put(data)

    def readinto(self, buffer: Any) -> int:
        while not self._rest and not self._eof:
            chunk = self._chunks.get()
            if chunk is None:
                self._eof = True
            else:
                self._rest = chunk
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size


class SegmentDecoder:
    """``feed(segment)`` as segments arrive, ``end()`` after the last; ``frames()`` yields the
    decoded video frames (``av.VideoFrame``, with pts and time base) from a worker thread."""

    def __init__(self, *, analyzeduration: float = 2.5) -> None:
        self._pipe = _Pipe()
        self._frames: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._options = {"analyzeduration": str(int(analyzeduration * 1_000_000))}
        self._thread = threading.Thread(target=self._decode, name="live-decoder", daemon=True)
        self._thread.start()

    def feed(self, segment: bytes) -> None:
        if segment:
            self._pipe.feed(segment)

    def end(self) -> None:
        self._pipe.feed(None)

    def _decode(self) -> None:
        try:
            with av.open(self._pipe, format="mpegts", options=self._options) as container:
                for frame in container.decode(video=0):
                    self._frames.put(frame)
        except Exception as exc:  # a broken stream ends the frames with the reason
            self._frames.put(exc)
        self._frames.put(None)

    def frames(self) -> Iterator[av.VideoFrame]:
        """Blocking: run it in a thread. Raises what broke the decoding, if anything did."""
        while (item := self._frames.get()) is not None:
            if isinstance(item, Exception):
                raise item
            yield item


def cover_crop(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """RGB ``(height, width, 3)`` uint8: scaled so it covers the target, centre-cropped."""
    scale = max(width / frame.width, height / frame.height)
    scaled_w, scaled_h = max(width, math.ceil(frame.width * scale)), max(height, math.ceil(frame.height * scale))
    image = frame.reformat(width=scaled_w, height=scaled_h, format="rgb24").to_ndarray()
    top, left = (scaled_h - height) // 2, (scaled_w - width) // 2
    return np.ascontiguousarray(image[top:top + height, left:left + width])


class FrameRateCap:
    """Keeps at most ``max_fps`` frames per second of stream time, spread evenly: each kept frame
    books the next slot one interval later (not one interval after itself, which would keep only
    20 of 60 frames a second), and a gap in the stream does not bank slots for a burst."""

    def __init__(self, max_fps: float = 24.0) -> None:
        self._interval = 1.0 / max_fps
        self._next: float | None = None

    def keep(self, seconds: float) -> bool:
        if self._next is not None and seconds < self._next - 1e-6:
            return False
        self._next = max((self._next if self._next is not None else seconds) + self._interval, seconds)
        return True


class _SegmentSink(io.RawIOBase):
    def __init__(self, done: Callable[[bytes], None]) -> None:
        self._buffer = bytearray()
        self._done = done

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buffer += bytes(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._done(bytes(self._buffer))
        super().close()


class SegmentEncoder:
    """Frames in, MPEG-TS segments out through ``on_segment(bytes)``, each starting with a
    keyframe; the TS stays continuous across segments (one muxer, stable PIDs, rising PTS)."""

    def __init__(self, width: int, height: int, on_segment: Callable[[bytes], None], *, fps: int = 24,
                 gop_seconds: float = 2.0) -> None:
        self._gop = gop_seconds
        self._next_keyframe = 0.0
        self._container = av.open("%d.ts", mode="w", format="segment", io_open=lambda *_: _SegmentSink(on_segment),
                                   options={"segment_format": "mpegts", "segment_time": f"{gop_seconds:g}",
                                            "break_non_keyframes": "0"})
        stream = self._container.add_stream("libx264", rate=fps, options={
            "preset": "superfast", "tune": "zerolatency", "bf": "0", "forced-idr": "1"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = TIME_BASE
        self._stream = stream

    def encode(self, image: np.ndarray, seconds: float) -> None:
        """One RGB frame at ``seconds`` of stream time."""
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = round(seconds / TIME_BASE), TIME_BASE
        if seconds >= self._next_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
            self._next_keyframe = seconds + self._gop
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder; the last segment is handed over."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

"""Live video media on PyAV: MPEG-TS segments in, frames out, and frames back into segments,
the way Livepeer's ai-runner does it.

* ``SegmentDecoder``: trickle segments are concatenated into one stream (they are cut from one
  continuous TS) and demuxed by one ``av.open`` in a worker thread: video frames, and the first
  audio stream's frames when there is one.
* ``cover_crop``: a frame scaled to cover ``width``×``height`` and centre-cropped to it.
* ``FrameRateCap``: drops frames that come sooner than ``1/max_fps`` after the last kept one.
* ``SegmentEncoder``: libx264 (superfast, zerolatency, no B-frames) into FFmpeg's segment muxer,
  a keyframe forced every ``gop_seconds`` so that each segment starts with one, time base 1/90000;
  audio passed through re-encoded as mono 48 kHz Opus, as the ai-runner does. Each segment's bytes
  are written out packet by packet as the muxer makes them (``flush_packets``), so a reader gets
  a frame as soon as it is encoded, not when its 2 s segment is complete.
"""

from __future__ import annotations

import collections
import io
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any, BinaryIO

import av
import numpy as np

__all__ = ["TIME_BASE", "FrameRateCap", "LateFrames", "SegmentDecoder", "SegmentEncoder", "cover_crop", "whole_segments"]

AUDIO_RATE = 48000

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
    decoded frames (``av.VideoFrame``, and ``av.AudioFrame`` when the stream has audio, with pts
    and time base) in stream order from a worker thread. ``has_audio`` is known once the first
    frame is out."""

    def __init__(self, *, analyzeduration: float = 2.5, arrivals: LateFrames | None = None) -> None:
        self._arrivals = arrivals
        self._pipe = _Pipe()
        self._frames: collections.deque[Any] = collections.deque()
        self._ready = threading.Condition()
        self._options = {"analyzeduration": str(int(analyzeduration * 1_000_000))}
        self.has_audio = False
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
                streams = [container.streams.video[0], *container.streams.audio[:1]]
                # slice threads only: frame threads hold each frame back until the next arrives
                streams[0].codec_context.thread_type = "SLICE"
                self.has_audio = len(streams) > 1
                for packet in container.demux(streams):
                    for frame in packet.decode():
                        self._put(frame)
        except Exception as exc:  # a broken stream ends the frames with the reason
            self._put(exc)
        self._put(None)

    def _put(self, item: Any) -> None:
        if self._arrivals is not None and isinstance(item, av.VideoFrame) and item.time is not None:
            self._arrivals.arrived(float(item.time), time.monotonic())
        with self._ready:
            self._frames.append(item)
            self._ready.notify()

    def frames(self) -> Iterator[av.VideoFrame | av.AudioFrame]:
        """Blocking: run it in a thread. Raises what broke the decoding, if anything did."""
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._frames)
                item = self._frames.popleft()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def video_waiting(self) -> bool:
        """A decoded video frame is waiting: the one in hand may be skipped to catch up."""
        with self._ready:
            return any(isinstance(item, av.VideoFrame) for item in self._frames)


def cover_crop(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """RGB ``(height, width, 3)`` uint8: scaled so it covers the target, centre-cropped."""
    scale = max(width / frame.width, height / frame.height)
    scaled_w, scaled_h = max(width, math.ceil(frame.width * scale)), max(height, math.ceil(frame.height * scale))
    image = frame.reformat(width=scaled_w, height=scaled_h, format="rgb24").to_ndarray()
    top, left = (scaled_h - height) // 2, (scaled_w - width) // 2
    return np.ascontiguousarray(image[top:top + height, left:left + width])


class LateFrames:
    """Drops a frame that is over ``max_lag`` seconds behind the newest input (when a newer
    frame is already decoded), so a pipeline slower than the input, or a session that starts
    behind (input sent while its model loaded), catches up with the live edge instead of
    staying behind, as the ai-runner drops input when its queue is full. Behind what: the
    smallest gap seen between a frame's arrival and its stream time (``arrived``), which the
    newest frames set."""

    def __init__(self, max_lag: float = 0.5) -> None:
        self._max_lag = max_lag
        self._best_gap: float | None = None

    def arrived(self, seconds: float, now: float) -> None:
        gap = now - seconds
        self._best_gap = gap if self._best_gap is None else min(self._best_gap, gap)

    def late(self, seconds: float, now: float) -> bool:
        if self._best_gap is None:
            return False
        return now - seconds - self._best_gap > self._max_lag


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


class _SegmentFile(io.RawIOBase):
    """What the segment muxer writes one segment into: passes the bytes on as they come."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._target.write(bytes(data))
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._target.close()
        super().close()


class _WholeSegment(io.BytesIO):
    def __init__(self, done: Callable[[bytes], None]) -> None:
        super().__init__()
        self._done = done

    def close(self) -> None:
        if not self.closed:
            self._done(self.getvalue())
        super().close()


def whole_segments(done: Callable[[bytes], None]) -> Callable[[], BinaryIO]:
    """An ``open_segment`` for ``SegmentEncoder`` that buffers each segment and hands it to
    ``done`` whole: for files, tests and anything that does not stream."""
    return lambda: _WholeSegment(done)


class SegmentEncoder:
    """Frames in, MPEG-TS segments out: ``open_segment()`` is called when the muxer starts a
    segment and returns where its bytes go (``write``; ``close`` ends the segment). Each segment
    starts with a keyframe; the TS stays continuous across segments (one muxer, stable PIDs,
    rising PTS)."""

    def __init__(self, width: int, height: int, open_segment: Callable[[], BinaryIO], *, fps: int = 24,
                 gop_seconds: float = 2.0, audio: bool = False) -> None:
        self._gop = gop_seconds
        self._next_keyframe = 0.0
        self._container = av.open("%d.ts", mode="w", format="segment",
                                   io_open=lambda *_: _SegmentFile(open_segment()),
                                   options={"segment_format": "mpegts", "segment_time": f"{gop_seconds:g}",
                                            "break_non_keyframes": "0", "flush_packets": "1",
                                            "segment_format_options": "omit_video_pes_length=0"})
        stream = self._container.add_stream("libx264", rate=fps, options={
            "preset": "superfast", "tune": "zerolatency", "bf": "0", "forced-idr": "1"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = TIME_BASE
        self._stream = stream
        self._audio: av.audio.stream.AudioStream | None = None
        if audio:
            self._audio = self._container.add_stream("libopus", rate=AUDIO_RATE, layout="mono")
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE,
                                                frame_size=self._audio.codec_context.frame_size or 960)
            self._audio_samples: int | None = None

    def encode(self, image: np.ndarray, seconds: float) -> None:
        """One RGB frame at ``seconds`` of stream time."""
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = round(seconds / TIME_BASE), TIME_BASE
        if seconds >= self._next_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
            self._next_keyframe = seconds + self._gop
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def encode_audio(self, frame: av.AudioFrame, seconds: float) -> None:
        """Decoded input audio that starts at ``seconds`` of stream time (the encoder was made
        with ``audio=True``); resampled and timed by its samples from the first frame on, so
        the Opus stream has no gaps."""
        assert self._audio is not None, "SegmentEncoder(audio=True) takes audio"
        if self._audio_samples is None:
            self._audio_samples = max(0, round(seconds * AUDIO_RATE))
        frame.pts = None
        for chunk in self._resampler.resample(frame):
            self._encode_audio_chunk(chunk)

    def _encode_audio_chunk(self, chunk: av.AudioFrame | None) -> None:
        assert self._audio is not None and self._audio_samples is not None
        if chunk is not None:
            chunk.pts, chunk.time_base = self._audio_samples, Fraction(1, AUDIO_RATE)
            self._audio_samples += chunk.samples
        for packet in self._audio.encode(chunk):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoders; the last segment is closed."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        if self._audio is not None and self._audio_samples is not None:
            for chunk in self._resampler.resample(None):
                self._encode_audio_chunk(chunk)
            self._encode_audio_chunk(None)
        self._container.close()

"""The live media layer with real PyAV: frames -> 2 s MPEG-TS segments that each start with a
keyframe -> one continuous decode, as trickle carries them."""

import av
import numpy as np
import pytest

from warmgate.plugins.live.media import (
    FrameRateCap,
    LateFrames,
    SegmentDecoder,
    SegmentEncoder,
    cover_crop,
    whole_segments,
)


def encode(seconds, fps=24, size=(96, 64)):
    segments = []
    encoder = SegmentEncoder(*size, whole_segments(segments.append), fps=fps)
    for i in range(int(seconds * fps)):
        image = np.full((size[1], size[0], 3), (i * 7) % 256, np.uint8)
        encoder.encode(image, i / fps)
    encoder.close()
    return segments


def test_segments_start_with_a_keyframe_every_two_seconds():
    segments = encode(5)
    assert len(segments) == 3
    for n, segment in enumerate(segments):
        with av.open(__import__("io").BytesIO(segment), format="mpegts") as container:
            frames = list(container.decode(video=0))
        assert frames[0].key_frame and frames[0].pts == n * 2 * 90000
        assert len(frames) == (48 if n < 2 else 24)


def test_segments_decode_as_one_continuous_stream():
    decoder = SegmentDecoder()
    for segment in encode(5):
        decoder.feed(segment)
    decoder.end()
    frames = list(decoder.frames())
    assert len(frames) == 120
    pts = [frame.pts for frame in frames]
    assert pts == sorted(pts) and len(set(pts)) == 120
    assert (frames[0].width, frames[0].height) == (96, 64)


def test_garbage_ends_the_frames_with_the_reason():
    decoder = SegmentDecoder()
    decoder.feed(b"this is not a transport stream" * 100)
    decoder.end()
    with pytest.raises(av.error.FFmpegError):
        list(decoder.frames())


@pytest.mark.parametrize(("source", "target"), [((96, 64), (64, 64)), ((64, 96), (64, 64)), ((50, 30), (128, 64))])
def test_cover_crop_fills_the_target_exactly(source, target):
    frame = av.VideoFrame.from_ndarray(np.zeros((source[1], source[0], 3), np.uint8), format="rgb24")
    assert cover_crop(frame, *target).shape == (target[1], target[0], 3)


def test_frame_rate_cap_keeps_at_most_24_a_second():
    cap = FrameRateCap(24)
    kept = [i for i in range(60) if cap.keep(i / 60)]
    assert len(kept) == 24


def tone(seconds, rate=44100, chunk=1024):
    """Stereo 440 Hz in ``chunk``-sample frames, with their start times."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    for start in range(0, len(samples) - chunk + 1, chunk):
        frame = av.AudioFrame.from_ndarray(np.stack([samples[start:start + chunk]] * 2).reshape(1, -1),
                                           format="s16", layout="stereo")
        frame.sample_rate = rate
        yield frame, start / rate


def test_audio_passes_through_as_opus_in_the_same_segments():
    segments = []
    encoder = SegmentEncoder(96, 64, whole_segments(segments.append), audio=True)
    audio = tone(3)
    for i in range(72):
        encoder.encode(np.zeros((64, 96, 3), np.uint8), i / 24)
        for frame, start in audio:  # the audio of this frame's time span
            encoder.encode_audio(frame, start)
            if start > (i + 1) / 24:
                break
    encoder.close()
    assert len(segments) == 2
    decoder = SegmentDecoder()
    for segment in segments:
        decoder.feed(segment)
    decoder.end()
    frames = list(decoder.frames())
    assert decoder.has_audio
    video = [f for f in frames if isinstance(f, av.VideoFrame)]
    sound = [f for f in frames if isinstance(f, av.AudioFrame)]
    assert len(video) == 72
    assert {(f.sample_rate, f.layout.name) for f in sound} == {(48000, "mono")}
    assert abs(sum(f.samples for f in sound) / 48000 - 3) < 0.1
    loudness = np.abs(np.concatenate([f.to_ndarray().ravel() for f in sound])).mean()
    assert loudness > 0.05  # a tone, not silence (float samples after Opus decoding)


def test_segments_are_written_as_they_are_encoded_not_when_complete():
    class Recorder:
        def __init__(self):
            self.writes, self.closed = [], False

        def write(self, data):
            self.writes.append(len(data))

        def close(self):
            self.closed = True

    opened = []
    encoder = SegmentEncoder(96, 64, lambda: opened.append(Recorder()) or opened[-1])
    for i in range(12):
        encoder.encode(np.full((64, 96, 3), i * 20, np.uint8), i / 24)
    assert len(opened) == 1 and not opened[0].closed and len(opened[0].writes) >= 10
    encoder.close()
    assert opened[0].closed


def test_late_frames_are_those_behind_the_newest_arrival():
    late = LateFrames(max_lag=0.5)
    assert not late.late(0.0, 10.0)  # nothing arrived yet: nothing to be behind
    for i in range(24):  # real time: frame i arrives at 10 + i/24
        late.arrived(i / 24, 10.0 + i / 24)
    assert not late.late(23 / 24, 10.0 + 23 / 24 + 0.4)  # 0.4 s behind the live edge: kept
    assert late.late(10 / 24, 10.0 + 23 / 24)  # 13 frames (0.54 s) behind the newest: dropped
    # a session that starts behind (input sent while its model loaded) gets a backlog at once:
    # all but its last half second is late, so it starts at the live edge
    backlog = LateFrames(max_lag=0.5)
    for i in range(72):
        backlog.arrived(i / 24, 20.0)
    verdicts = [backlog.late(i / 24, 20.0) for i in range(72)]
    assert all(verdicts[:58]) and not any(verdicts[60:])

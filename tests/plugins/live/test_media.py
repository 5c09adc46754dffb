"""The live media layer with real PyAV: frames -> 2 s MPEG-TS segments that each start with a
keyframe -> one continuous decode, as trickle carries them."""

import av
import numpy as np
import pytest

from warmgate.plugins.live.media import FrameRateCap, SegmentDecoder, SegmentEncoder, cover_crop


def encode(seconds, fps=24, size=(96, 64)):
    segments = []
    encoder = SegmentEncoder(*size, segments.append, fps=fps)
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

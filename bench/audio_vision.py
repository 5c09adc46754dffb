"""What the gateway costs the audio and vision pipelines: tiny models, a bare Litestar app vs. the gateway.

audio-to-text (Whisper on 3 s of FLAC), text-to-speech (VITS), image-to-text (BLIP) and
segment-anything-2 (SAM 2), each served with the same model and request bodies by the bare app of
``bare_pipelines.py`` (the pipeline's own runner, no gateway) and by ``warmgate serve`` with the
function warm, each in its own uvicorn subprocess. Printed: throughput ratio gateway/bare (target
>= 0.95) and the gateway's own time (``X-Warmgate-Overhead-Ms``). See ``harness.py``.

Usage: ``python bench/audio_vision.py [--duration 4] [--rounds 3] [--pipelines a,b]``. This is a
script, not a test.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness import Case, compare, png, tiny_model  # noqa: E402

__test__ = False  # never collected by pytest

TEXT = "Hello there. This sentence is spoken by a tiny voice."


def flac(seconds: float = 3.0) -> bytes:
    import av
    import numpy as np

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=16000)
        stream.layout = "mono"
        tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(16000 * seconds)) / 16000)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return buffer.getvalue()


def cases() -> list[Case]:
    return [
        Case("audio-to-text", tiny_model("build_tiny_whisper"), {"return_timestamps": "true"},
             {"audio": ("speech.flac", flac(), "audio/flac")}, {"max_new_tokens": 16}),
        Case("text-to-speech", tiny_model("build_tiny_vits"), {"text": TEXT}),
        Case("image-to-text", tiny_model("build_tiny_blip"), {}, {"image": ("in.png", png(96, 64), "image/png")},
             {"max_new_tokens": 16}),
        Case("segment-anything-2", tiny_model("build_tiny_sam2"), {"point_coords": "[[40, 50]]", "point_labels": "[1]"},
             {"image": ("in.png", png(96, 64), "image/png")}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measurement")
    parser.add_argument("--pipelines", default="", help="comma-separated subset")
    args = parser.parse_args()
    selected = [c for c in cases() if not args.pipelines or c.pipeline in args.pipelines.split(",")]
    if not selected:
        sys.exit(f"error: no pipeline matches {args.pipelines!r}")
    compare(selected, args.duration, args.rounds)


if __name__ == "__main__":
    main()

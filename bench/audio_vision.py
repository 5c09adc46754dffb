"""What the gateway costs the audio and vision pipelines: tiny models, direct in-process vs. HTTP.

audio-to-text (Whisper on 3 s of FLAC), text-to-speech (VITS), image-to-text (BLIP) and
segment-anything-2 (SAM 2), each called in this process (decoding the same uploaded bytes on every
call) and through ``warmgate serve`` with the function warm. See ``harness.py``.

Usage: ``python bench/audio_vision.py [--duration 4] [--rounds 3] [--pipelines a,b]``. This is a
script, not a test.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness import Case, compare  # noqa: E402

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


def png(width: int = 96, height: int = 64) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 140, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def _builder(name: str) -> Callable[[Path], None]:
    def build(directory: Path) -> None:
        from warmgate.testing import models

        getattr(models, name)(directory)

    return build


def _whisper(model: Path) -> Callable[[], Any]:
    from transformers import pipeline

    from warmgate.core.media import decode_audio
    from warmgate.core.spec import File

    asr = pipeline("automatic-speech-recognition", model=str(model))
    upload = File("a.flac", "audio/flac", flac())
    return lambda: asr({"raw": decode_audio(upload), "sampling_rate": 16000}, return_timestamps=True,
                       generate_kwargs={"max_new_tokens": 16})


def _vits(model: Path) -> Callable[[], Any]:
    from transformers import pipeline

    tts = pipeline("text-to-speech", model=str(model))
    return lambda: tts(TEXT)


def _blip(model: Path) -> Callable[[], Any]:
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model)
    blip = AutoModelForImageTextToText.from_pretrained(model).eval()
    data = png()

    def caption() -> str:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        with torch.no_grad():
            out = blip.generate(**processor(images=image, return_tensors="pt"), max_new_tokens=16)
        return processor.decode(out[0], skip_special_tokens=True)

    return caption


def _sam2(model: Path) -> Callable[[], Any]:
    """SAM 2 through warmgate's own runner in this process (its pre/post-processing is warmgate's,
    as Sam2Processor needs torchvision): what remains between the two columns is HTTP and the
    gateway."""
    from warmgate.core.spec import File
    from warmgate.plugins.vision.segment_anything_2 import load_segment_anything_2, prepare_segmentation
    from warmgate.plugins.vision.wire import SegmentAnything2Params

    runner = load_segment_anything_2(str(model), {})
    params = SegmentAnything2Params(image=File("in.png", "image/png", png()), point_coords="[[40, 50]]",
                                    point_labels="[1]")
    return lambda: runner(prepare_segmentation(params, {}))


def cases() -> list[Case]:
    return [
        Case("audio-to-text", _builder("build_tiny_whisper"), _whisper, {"return_timestamps": "true"},
             {"audio": ("speech.flac", flac(), "audio/flac")}, {"max_new_tokens": 16}),
        Case("text-to-speech", _builder("build_tiny_vits"), _vits, {"text": TEXT}),
        Case("image-to-text", _builder("build_tiny_blip"), _blip, {}, {"image": ("in.png", png(), "image/png")},
             {"max_new_tokens": 16}),
        Case("segment-anything-2", _builder("build_tiny_sam2"), _sam2, {"point_coords": "[[40, 50]]",
                                                                         "point_labels": "[1]"},
             {"image": ("in.png", png(), "image/png")}),
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

"""What the gateway costs a diffusion pipeline: tiny models, a bare Litestar app vs. the gateway.

For each pipeline (text-to-image, image-to-image, image-to-video, upscale) the same tiny model
and the same request bodies are served two ways, each in its own uvicorn subprocess: the bare
app of ``bare_pipelines.py`` (the pipeline's own runner, no gateway) and ``warmgate serve`` with
the function warm, driven by clients in threads (multipart uploads for the image routes; PNG/mp4
encoding included). Printed: throughput ratio gateway/bare (target >= 0.95) and the gateway's
own time (``X-Warmgate-Overhead-Ms``). See ``harness.py``.

Usage: ``python bench/diffusion.py [--duration 4] [--rounds 3] [--steps N] [--pipelines a,b]``.
``OMP_NUM_THREADS=1`` is the default here so runs are comparable on a small machine. This is a
script, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness import Case, compare, png, tiny_model  # noqa: E402

__test__ = False  # never collected by pytest

VIDEO_OPTIONS = {"num_frames": 4, "decode_chunk_size": 4}


def cases(steps: int) -> list[Case]:
    specs: list[tuple[str, str, dict[str, Any], tuple[int, int] | None]] = [
        ("text-to-image", "build_tiny_sd", {"prompt": "a lighthouse", "width": 64, "height": 64,
                                            "num_inference_steps": steps or 4}, None),
        ("image-to-image", "build_tiny_pix2pix", {"prompt": "make it blue", "num_inference_steps": steps or 4}, (64, 64)),
        ("image-to-video", "build_tiny_svd", {"width": 32, "height": 32, "num_inference_steps": steps or 2,
                                              "fps": 6}, (64, 64)),
        ("upscale", "build_tiny_upscaler", {"prompt": "sharp", "num_inference_steps": steps or 4}, (32, 32)),
    ]
    built = []
    for pipeline, builder, body, upload in specs:
        body = {**body, "seed": 1, "safety_check": False}
        files = {"image": ("in.png", png(*upload), "image/png")} if upload else None
        built.append(Case(pipeline, tiny_model(builder), body, files,
                          VIDEO_OPTIONS if pipeline == "image-to-video" else {}))
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measurement")
    parser.add_argument("--steps", type=int, default=0,
                        help="denoising steps for every pipeline (default: 4, 2 for video); more steps = longer calls")
    parser.add_argument("--pipelines", default="", help="comma-separated subset")
    args = parser.parse_args()
    selected = [c for c in cases(args.steps) if not args.pipelines or c.pipeline in args.pipelines.split(",")]
    if not selected:
        sys.exit(f"error: no pipeline matches {args.pipelines!r}")
    compare(selected, args.duration, args.rounds)


if __name__ == "__main__":
    main()

"""What the gateway costs a diffusion pipeline: tiny models, direct in-process vs. over HTTP.

For each pipeline (text-to-image, image-to-image, image-to-video, upscale) the same tiny model
and the same arguments run two ways: the diffusers pipeline called in this process, and
``warmgate serve`` in a subprocess with the function warm, driven by httpx clients in threads
(multipart uploads for the image routes; PNG/mp4 encoding included). See ``harness.py``.

Usage: ``python bench/diffusion.py [--duration 4] [--rounds 3] [--steps N] [--pipelines a,b]``.
``OMP_NUM_THREADS=1`` is the default here so runs are comparable on a small machine. This is a
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

VIDEO_OPTIONS = {"num_frames": 4, "decode_chunk_size": 4}


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 60, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def _builder(name: str) -> Callable[[Path], None]:
    def build(directory: Path) -> None:
        from warmgate.testing import models

        getattr(models, name)(directory)

    return build


def _direct(pipeline: str, body: dict[str, Any], upload: tuple[int, int] | None) -> Callable[[Path], Callable[[], Any]]:
    """The diffusers call the gateway makes for ``pipeline``, with the same arguments."""

    def load(model: Path) -> Callable[[], Any]:
        import torch
        from diffusers import DiffusionPipeline
        from PIL import Image

        pipe = DiffusionPipeline.from_pretrained(model)
        pipe.set_progress_bar_config(disable=True)
        image = Image.open(io.BytesIO(png(*upload))).convert("RGB") if upload else None
        steps = body["num_inference_steps"]

        def generator() -> list[torch.Generator]:
            return [torch.Generator("cpu").manual_seed(body["seed"])]

        if pipeline == "text-to-image":
            return lambda: pipe(prompt=body["prompt"], width=body["width"], height=body["height"],
                                num_inference_steps=steps, generator=generator()).images
        if pipeline == "image-to-video":
            return lambda: pipe(image=image, width=body["width"], height=body["height"], fps=body["fps"],
                                num_inference_steps=steps, generator=generator(), **VIDEO_OPTIONS).frames
        return lambda: pipe(prompt=body["prompt"], image=image, num_inference_steps=steps,
                            generator=generator()).images

    return load


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
        built.append(Case(pipeline, _builder(builder), _direct(pipeline, body, upload), body, files,
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

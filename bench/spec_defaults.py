"""Each pipeline of the demo profile called with only its required fields (the spec defaults:
text-to-image 1024x576 at 50 steps, image-to-image 100 steps, image-to-video 1024x576 at 25
steps, upscale 75 steps, ...), as a new user's first ``curl`` does.

The gateway runs in this process (``warmgate.testing.serve``) with ``--profile demo``'s tiny
models, built into a temporary directory. Each pipeline is called once cold (its load included)
and ``--rounds`` times warm; the table prints the cold time and the median warm time.

Usage: ``python bench/spec_defaults.py [--rounds 3] [--pipelines a,b]``. ``OMP_NUM_THREADS=1``
is the default so runs are comparable on a small machine. This is a script, not a test.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

__test__ = False  # never collected by pytest


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 60, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def wav(seconds: float) -> bytes:
    import numpy as np

    from warmgate.core.media import encode_wav

    t = np.arange(int(16000 * seconds)) / 16000
    return encode_wav(0.3 * np.sin(2 * np.pi * 440 * t), 16000)


def requests() -> dict[str, tuple[str, dict[str, Any]]]:
    """pipeline -> (path, httpx keyword arguments) with only the required fields. Uploads are
    what a user would send: a 1024x576 picture, a 128 px one to upscale (to 512 px), 10 s of speech."""
    picture = {"image": ("in.png", png(1024, 576), "image/png")}
    return {
        "text-to-image": ("/text-to-image", {"json": {"prompt": "a lighthouse"}}),
        "image-to-image": ("/image-to-image", {"files": picture, "data": {"prompt": "make it night"}}),
        "image-to-video": ("/image-to-video", {"files": picture}),
        "upscale": ("/upscale", {"files": {"image": ("in.png", png(128, 128), "image/png")},
                                 "data": {"prompt": "sharp"}}),
        "image-to-text": ("/image-to-text", {"files": picture}),
        "segment-anything-2": ("/segment-anything-2", {"files": picture,
                                                       "data": {"point_coords": "[[512, 288]]", "point_labels": "[1]"}}),
        "audio-to-text": ("/audio-to-text", {"files": {"audio": ("speech.wav", wav(10), "audio/wav")}}),
        "text-to-speech": ("/text-to-speech", {"json": {"text": "Hello there. This is the demo voice."}}),
        "llm": ("/v1/chat/completions", {"json": {"model": "warmgate-demo/tiny-chat",
                                                               "messages": [{"role": "user", "content": "hi"}]}}),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipelines", default="")
    args = parser.parse_args(argv)

    import httpx

    from warmgate.core.http.app import create_app
    from warmgate.core.settings import GatewaySettings, Settings
    from warmgate.testing import serve

    chosen = requests()
    if args.pipelines:
        chosen = {name: chosen[name] for name in args.pipelines.split(",")}
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        settings = Settings(profile="demo", gateway=GatewaySettings(cache_dir=cache, access_log=False,
                                                                    log_level="warning"))
        with serve(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=600) as client:
            served = {f["pipeline"] for f in client.get("/functions").json()["functions"]}
            for name, (path, kwargs) in chosen.items():
                if name not in served:
                    print(f"{name}: not served (plugin not installed)", file=sys.stderr)
                    continue
                started = time.perf_counter()
                first = client.post(path, **kwargs)
                cold = time.perf_counter() - started
                warm = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    response = client.post(path, **kwargs)
                    warm.append(time.perf_counter() - started)
                    response.raise_for_status()
                rows.append((name, first.status_code, cold, statistics.median(warm)))
    print(f"| pipeline (only required fields) | status | cold s (build+load+run) | warm s (median of {args.rounds}) |")
    print("|---|---|---|---|")
    for name, status, cold, warm_s in rows:
        print(f"| {name} | {status} | {cold:.2f} | {warm_s:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])

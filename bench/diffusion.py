"""What the gateway costs a diffusion pipeline: tiny models, direct in-process vs. over HTTP.

For each pipeline (text-to-image, image-to-image, image-to-video, upscale) the same tiny model
and the same arguments run two ways:

* ``direct``: the diffusers pipeline called in this process, one call at a time (a pipeline is
  not thread-safe, so c=4 means four callers sharing a lock, as four clients would share it);
* ``warmgate``: ``warmgate serve`` in a subprocess with the function warm, driven by httpx
  clients in threads (multipart uploads for the image routes), PNG/mp4 encoding included.

Usage: ``python bench/diffusion.py [--duration 4] [--rounds 3] [--pipelines text-to-image,upscale]``.
Set ``OMP_NUM_THREADS=1`` (the default here) so the runs are comparable on a small machine.
This is a script, not a test.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
from processes import free_port, stop  # noqa: E402

__test__ = False  # never collected by pytest

CONCURRENCY = (1, 4)


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 60, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


# pipeline -> (builder, HTTP form or JSON, upload size or None, direct call arguments)
CASES: dict[str, dict[str, Any]] = {
    "text-to-image": {"builder": "build_tiny_sd", "upload": None,
                      "body": {"prompt": "a lighthouse", "width": 64, "height": 64, "num_inference_steps": 4,
                               "seed": 1, "safety_check": False}},
    "image-to-image": {"builder": "build_tiny_pix2pix", "upload": (64, 64),
                       "body": {"prompt": "make it blue", "num_inference_steps": 4, "seed": 1, "safety_check": False}},
    "image-to-video": {"builder": "build_tiny_svd", "upload": (64, 64),
                       "body": {"width": 32, "height": 32, "num_inference_steps": 2, "fps": 6, "seed": 1,
                                "safety_check": False}},
    "upscale": {"builder": "build_tiny_upscaler", "upload": (32, 32),
                "body": {"prompt": "sharp", "num_inference_steps": 4, "seed": 1, "safety_check": False}},
}
VIDEO_OPTIONS = {"num_frames": 4, "decode_chunk_size": 4}


def direct_call(pipeline: str, model: Path) -> Callable[[], Any]:
    """The diffusers call the gateway makes for ``pipeline``, with the same arguments."""
    import torch
    from diffusers import DiffusionPipeline
    from PIL import Image

    pipe = DiffusionPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    body = CASES[pipeline]["body"]
    size = CASES[pipeline]["upload"]
    image = Image.open(io.BytesIO(png(*size))).convert("RGB") if size else None

    def generator() -> list[torch.Generator]:
        return [torch.Generator("cpu").manual_seed(body["seed"])]

    if pipeline == "text-to-image":
        return lambda: pipe(prompt=body["prompt"], width=body["width"], height=body["height"],
                            num_inference_steps=body["num_inference_steps"], generator=generator()).images
    if pipeline == "image-to-image":
        return lambda: pipe(prompt=body["prompt"], image=image, num_inference_steps=body["num_inference_steps"],
                            generator=generator()).images
    if pipeline == "image-to-video":
        return lambda: pipe(image=image, width=body["width"], height=body["height"], fps=body["fps"],
                            num_inference_steps=body["num_inference_steps"], generator=generator(),
                            **VIDEO_OPTIONS).frames
    return lambda: pipe(prompt=body["prompt"], image=image, num_inference_steps=body["num_inference_steps"],
                        generator=generator()).images


def drive(call: Callable[[], Any], concurrency: int, duration: float) -> dict[str, float]:
    """``concurrency`` threads calling ``call`` until the time is up: requests/s and p50 ms."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    deadline = time.perf_counter() + duration

    def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                call()
            except BaseException as exc:  # reported below: a failing run has no numbers
                failures.append(exc)
                return
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        sys.exit(f"error: {failures[0]!r}")
    return {"rps": len(latencies) / (time.perf_counter() - began), "p50_ms": statistics.median(latencies) * 1000}


def direct_caller(pipeline: str, model: Path) -> Callable[[], Any]:
    call = direct_call(pipeline, model)
    lock = threading.Lock()

    def serialized() -> Any:
        with lock:
            return call()

    serialized()  # warm-up
    return serialized


def gateway_caller(pipeline: str, base: str, overheads: list[float]) -> Callable[[], None]:
    """Posts one request; appends the gateway's own time (``X-Warmgate-Overhead-Ms``) to ``overheads``."""
    case = CASES[pipeline]
    local = threading.local()
    upload = png(*case["upload"]) if case["upload"] else None

    def request() -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=base, timeout=120)
        if upload is None:
            r = client.post(f"/{pipeline}", json=case["body"])
        else:
            data = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in case["body"].items()}
            r = client.post(f"/{pipeline}", data=data, files={"image": ("in.png", upload, "image/png")})
        if r.status_code != 200:
            raise RuntimeError(f"{pipeline}: {r.status_code} {r.text[:300]}")
        overheads.append(float(r.headers["x-warmgate-overhead-ms"]))

    request()  # warm-up
    return request


def start_gateway(models: dict[str, Path], root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = root / "serverless.yaml"
    functions = [{"pipeline": name, "model_id": str(path), "warm": True, "max_queue": 64,
                  "options": VIDEO_OPTIONS if name == "image-to-video" else {}} for name, path in models.items()]
    config.write_text(json.dumps({"gateway": {"access_log": False, "log_level": "warning"}, "functions": functions}))
    proc = subprocess.Popen([sys.executable, "-m", "warmgate", "serve", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            health = httpx.get(base + "/health", timeout=2)
            listed = [f for f in httpx.get(base + "/functions", timeout=2).json()["functions"] if f["pipeline"] in models]
            failed = [f"{f['name']}: {f['last_error']}" for f in listed if f["state"] == "error"]
            if failed:
                stop(proc)
                sys.exit(f"error: {'; '.join(failed)}")
            if health.status_code == 200 and {f["state"] for f in listed} <= {"idle", "warm"}:
                return proc, base
        except httpx.HTTPError:
            pass  # not up yet
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    stop(proc)
    sys.exit("error: warmgate serve did not load the functions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measurement")
    parser.add_argument("--steps", type=int, default=0,
                        help="denoising steps for every pipeline (default: 4, 2 for video); more steps = longer calls")
    parser.add_argument("--pipelines", default=",".join(CASES), help="comma-separated subset")
    args = parser.parse_args()
    pipelines = [p for p in args.pipelines.split(",") if p]
    unknown = set(pipelines) - set(CASES)
    if unknown:
        sys.exit(f"error: unknown pipelines {sorted(unknown)}; choose from {', '.join(CASES)}")

    if args.steps:
        for case in CASES.values():
            case["body"]["num_inference_steps"] = args.steps
    from warmgate.testing import models as builders

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = {}
        for name in pipelines:
            models[name] = root / name
            getattr(builders, CASES[name]["builder"])(models[name])
        proc, base = start_gateway(models, root)
        results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
        overheads: dict[str, list[float]] = {name: [] for name in pipelines}
        try:
            for name in pipelines:
                callers = {"direct": direct_caller(name, models[name]), "warmgate": gateway_caller(name, base, overheads[name])}
                for _ in range(args.rounds):  # interleaved, so the VM's drift hits both alike
                    for c in CONCURRENCY:
                        for variant, call in callers.items():
                            results.setdefault((name, variant, c), []).append(drive(call, c, args.duration))
        finally:
            stop(proc)

    def median(name: str, variant: str, c: int) -> dict[str, float]:
        runs = results[(name, variant, c)]
        return {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms")}

    print(f"{'pipeline':<16}{'c':>3}{'direct req/s':>14}{'p50 ms':>9}{'warmgate req/s':>16}{'p50 ms':>9}{'ratio':>8}"
          f"{'added p50 ms':>14}{'gateway ms':>12}")
    for name in pipelines:
        for c in CONCURRENCY:
            d, g = median(name, "direct", c), median(name, "warmgate", c)
            added = f"{g['p50_ms'] - d['p50_ms']:>14.1f}{statistics.median(overheads[name]):>12.2f}" if c == 1 else ""
            print(f"{name:<16}{c:>3}{d['rps']:>14.2f}{d['p50_ms']:>9.1f}{g['rps']:>16.2f}{g['p50_ms']:>9.1f}"
                  f"{g['rps'] / d['rps']:>8.3f}{added}")
    print("\ngateway ms = p50 of X-Warmgate-Overhead-Ms: the gateway's own time per request (routing, validation, "
          "upload decoding, queueing bookkeeping, JSON), without the model and its PNG/mp4 encoding.")
    print(f"medians of {args.rounds} interleaved rounds of {args.duration:g} s; ratio = warmgate req/s / direct "
          "req/s (target >= 0.95).\nAt c=4 the gateway queues in FIFO order, so its p50 is about four service times; "
          "direct callers race for a lock, so theirs is not comparable.")


if __name__ == "__main__":
    main()

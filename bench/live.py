"""Live video numbers: end-to-end latency per frame and frames per second, through a real
``warmgate serve`` on 127.0.0.1, for the ``noop`` pipeline and the ``diffusion`` one on the tiny
sd-turbo-layout model.

For each pipeline and output size, a hosted session (``POST /live/sessions``) gets a 640x360
H.264 stream at 24 fps published in real time: each frame is encoded when it is due and its
bytes go out on the open trickle segment at once (2 s segments, as an ingest makes them). A
subscriber reads the output channel as it is written and decodes it. A frame's latency is the
time from the moment its input was sent to the moment its output frame was decoded (output
frames keep their input's timestamp, which identifies them). The first 4 s are left out: the
demuxers' probing (2.5 s, as the ai-runner's) holds the first frames back once. fps out counts
the decoded output frames over the measured window; ``dropped`` are frames the gateway skipped
to stay within ``live.max_lag`` of the input.

Usage: ``python bench/live.py [--seconds 12] [--sizes 384,512] [--pipelines noop,diffusion]``.
A script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from processes import serve_gateway, stop

from warmgate.core.functions.demo import ensure_demo_model
from warmgate.plugins.diffusion import TINY_SD_TURBO
from warmgate.plugins.live.media import SegmentDecoder, SegmentEncoder
from warmgate.plugins.live.trickle.client import TricklePublisher, TrickleSubscriber

FPS = 24
WARMUP = 4.0
DEBUG = False


def moving_frame(i: int, width: int = 640, height: int = 360) -> np.ndarray:
    """A gradient with a bar sweeping across: content the encoder has to work for."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    image = np.empty((height, width, 3), np.uint8)
    image[...] = np.stack([x, x[::-1], np.full(width, (i * 5) % 256, np.float32)], axis=-1).astype(np.uint8)
    left = (i * 12) % (width - 40)
    image[:, left:left + 40] = 255
    return image


class _Chunks:
    """What the input encoder writes: queued for the event loop, which posts it."""

    def __init__(self, queue: list[tuple[str, bytes]]) -> None:
        self._queue = queue
        queue.append(("open", b""))

    def write(self, data: bytes) -> None:
        self._queue.append(("data", bytes(data)))

    def close(self) -> None:
        self._queue.append(("close", b""))


async def publish_live(url: str, seconds: float, sent: dict[int, float]) -> None:
    """Encode and post frames in real time; ``sent[i]`` is when frame i's bytes went out."""
    pending: list[tuple[str, bytes]] = []
    encoder = SegmentEncoder(640, 360, lambda: _Chunks(pending), fps=FPS)
    publisher = TricklePublisher(url)
    writer = None
    start = time.perf_counter()

    async def flush() -> None:
        nonlocal writer
        while pending:
            kind, data = pending.pop(0)
            if kind == "open":
                writer = await publisher.next()
            elif kind == "data" and writer is not None:
                await writer.write(data)
            elif kind == "close" and writer is not None:
                await writer.close()
                writer = None

    for i in range(int(seconds * FPS)):
        await asyncio.sleep(max(0.0, start + i / FPS - time.perf_counter()))
        encoder.encode(moving_frame(i), i / FPS)
        await flush()
        sent[i] = time.perf_counter()
    encoder.close()
    await flush()
    await publisher.close()


async def read_live(url: str, received: dict[int, float]) -> None:
    """Decode the output as it arrives; ``received[i]`` is when input frame i came out."""
    decoder = SegmentDecoder()

    def decode() -> None:
        for frame in decoder.frames():
            if isinstance(frame.time, float):
                received[round(frame.time * FPS)] = time.perf_counter()

    thread = threading.Thread(target=decode, daemon=True)
    thread.start()
    async with TrickleSubscriber(url, start=0) as subscriber:
        while (segment := await subscriber.next()) is not None:
            async for chunk in segment:
                decoder.feed(chunk)
    decoder.end()
    await asyncio.to_thread(thread.join, 30)


async def one_session(base: str, pipeline: str, size: int, seconds: float) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        r = await client.post("/live/sessions", json={"model_id": pipeline, "params": {"width": size, "height": size}})
        r.raise_for_status()
        urls = r.json()
        sent: dict[int, float] = {}
        received: dict[int, float] = {}
        reading = asyncio.ensure_future(read_live(urls["subscribe_url"], received))
        await publish_live(urls["publish_url"], seconds, sent)
        await asyncio.wait_for(reading, 120)
        info = next(s for s in (await client.get("/live/sessions")).json()["sessions"] if s["id"] == urls["id"])
    measured = [i for i in received if i / FPS >= WARMUP and i in sent]
    if DEBUG:
        print(pipeline, size, [(i, round(received[i] - sent[i], 2)) for i in sorted(received) if i in sent][::4])
    latencies = sorted((received[i] - sent[i]) * 1000 for i in measured)
    window = (max(measured) - min(measured) + 1) / FPS if measured else 0
    return {
        "pipeline": pipeline, "size": f"{size}x{size}", "in": len(sent), "out": len(received),
        "dropped": info["frames_dropped"], "fps_out": len(measured) / window if window else 0.0,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p90": latencies[int(0.9 * (len(latencies) - 1))] if latencies else float("nan"),
        "processing": info["latency_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--sizes", default="384,512")
    parser.add_argument("--pipelines", default="noop,diffusion")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="warmgate-bench-live-") as scratch:
        model = ensure_demo_model(TINY_SD_TURBO, Path(scratch) / "models")
        config = Path(scratch) / "serverless.yaml"
        config.write_text(f"gateway: {{host: 127.0.0.1, access_log: false, log_level: warning, cache_dir: {scratch}}}\n"
                          f"pricing: {{ledger: 'off'}}\n"
                          f"live: {{pipelines: {{diffusion: {{model_id: {model}}}}}}}\n")
        proc, base = serve_gateway(config, cwd=Path(scratch), quiet=False)
        try:
            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(httpx.HTTPError):  # not listening yet
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the gateway did not start")
                time.sleep(0.2)
            rows = [asyncio.run(one_session(base, pipeline, int(size), args.seconds))
                    for pipeline in args.pipelines.split(",") for size in args.sizes.split(",")]
        finally:
            stop(proc)
    print(f"\nlive video, 640x360 in at {FPS} fps for {args.seconds:g} s, real time; latency over frames after {WARMUP:g} s")
    print(f"{'pipeline':<10} {'output':>8} {'in':>5} {'out':>5} {'dropped':>8} {'fps out':>8} "
          f"{'p50 ms':>8} {'p90 ms':>8} {'proc ms':>8}")
    for row in rows:
        print(f"{row['pipeline']:<10} {row['size']:>8} {row['in']:>5} {row['out']:>5} {row['dropped']:>8} "
              f"{row['fps_out']:>8.1f} {row['p50']:>8.0f} {row['p90']:>8.0f} {row['processing'] or 0:>8.0f}")


if __name__ == "__main__":
    main()

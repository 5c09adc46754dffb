"""Embeddings of 32 inputs on the tiny local encoder: warmgate against a bare Litestar app that
serves the same runner, one server at a time, each in its own uvicorn subprocess on 127.0.0.1.

* ``bare``: ``POST /v1/embeddings`` decoding the request with msgspec, tokenising the inputs and
  calling ``EmbeddingsRunner`` (the same work the gateway does, nothing else);
* ``warmgate``: the same request through ``create_app`` (validation, ``prepare``'s tokenising,
  function acquire, metrics), no access log;
* ``warmgate+price``: priced per input token (a quote and its headers on every response).

Requests go one at a time (c=1) in interleaved rounds, so the VM's drift hits every variant alike.
Printed: the round trip p50, and the gateway's own time p50 from ``X-Warmgate-Overhead-Ms``
(target <= 1 ms; it includes tokenising the inputs, which the gateway does instead of the runner,
before the quote; the table prints that tokenising time too, measured in this process).

Usage: ``python bench/embeddings.py [--requests 200] [--rounds 3]``. A script, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from processes import free_port, stop

__test__ = False  # never collected by pytest

VARIANTS = ("bare", "warmgate", "warmgate+price", "bare, token ids", "warmgate, token ids")
_WORDS = "the quick brown fox hello world warm gate model embed search query".split()
INPUTS = [" ".join(_WORDS[i % 12:] + _WORDS[:i % 12]) for i in range(32)]
"""32 inputs of 12 words the tiny vocabulary has (14 tokens each with [CLS] and [SEP]), about the
tokens per word of a real tokenizer on English; out-of-vocabulary words would split into letters."""
BODY = {"model": "tiny", "input": INPUTS, "encoding_format": "float"}
_IDS = [[2, *range(141, 153), 3]] * len(INPUTS)
"""The ``token ids`` variants send 32 inputs of 14 token ids instead: the gateway's time without tokenising."""


def bare_app(model_dir: str) -> Any:
    import msgspec
    from litestar import Litestar, Request, Response, get, post

    from warmgate.plugins.llm.embeddings.encoder import describe
    from warmgate.plugins.llm.embeddings.runner import EmbeddingsRunner
    from warmgate.plugins.llm.embeddings.transformers_backend import load_transformers_embedder
    from warmgate.plugins.llm.embeddings.wire import EmbeddingJob, EmbeddingRequest

    runner = EmbeddingsRunner("tiny", load_transformers_embedder(model_dir, {}))
    encoder = describe(model_dir)
    decoder = msgspec.json.Decoder(EmbeddingRequest)

    @post("/v1/embeddings", status_code=200)
    async def embeddings(request: Request[Any, Any, Any]) -> Any:
        body = decoder.decode(await request.body())
        if isinstance(body.input[0], list):
            job = EmbeddingJob(request=body, token_ids=body.input)
        else:
            job = EmbeddingJob(request=body, texts=body.input, token_ids=encoder.tokenize(body.input))
        return Response(msgspec.json.encode(await runner(job)), media_type="application/json")

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "OK"}

    return Litestar([embeddings, health], openapi_config=None, logging_config=None)


def gateway_app(model_dir: str, priced: bool) -> Any:
    from warmgate import FunctionConfig, Settings, create_app
    from warmgate.core.settings import GatewaySettings, Price
    from warmgate.plugins.pricing.settings import PricingSettings

    function = FunctionConfig(pipeline="embeddings", model_id=model_dir, aliases=["tiny"], warm=True,
                              price=Price(price_per_unit=1000) if priced else None)
    return create_app(Settings(gateway=GatewaySettings(access_log=False), functions=[function],
                               sections=[PricingSettings(ledger="off")]))


def serve(variant: str, port: int, model_dir: str) -> None:
    import uvicorn

    app = bare_app(model_dir) if variant.startswith("bare") else gateway_app(model_dir, priced=variant == "warmgate+price")
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def start(variant: str, model_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", variant, str(port), str(model_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(httpx.HTTPError):  # not listening yet
            health = httpx.get(base + "/health", timeout=2)
            if health.status_code == 200 and b"LOADING" not in health.content:
                return proc, base
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"{variant} did not become healthy")


def measure(base: str, requests: int, body: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Round trips (ms) and the gateway's reported own time (ms), after a short warm-up."""
    trips, overheads = [], []
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(requests + 10):
            started = time.perf_counter()
            r = client.post("/v1/embeddings", json=body)
            elapsed = (time.perf_counter() - started) * 1000
            r.raise_for_status()
            if i >= 10:
                trips.append(elapsed)
                if "x-warmgate-overhead-ms" in r.headers:
                    overheads.append(float(r.headers["x-warmgate-overhead-ms"]))
    return trips, overheads


def tokenising_time(model_dir: Path) -> tuple[float, int]:
    from warmgate.plugins.llm.embeddings.encoder import describe

    encoder = describe(str(model_dir))
    times = []
    for _ in range(200):
        started = time.perf_counter()
        ids = encoder.tokenize(INPUTS)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[20:]), sum(map(len, ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", nargs=3, metavar=("VARIANT", "PORT", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return
    from warmgate.plugins.llm.embeddings.demo import build_tiny_embedding_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "tiny-embed"
        model_dir.mkdir()
        build_tiny_embedding_model(model_dir)
        results: dict[str, tuple[list[float], list[float]]] = {v: ([], []) for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                proc, base = start(variant, model_dir)
                try:
                    body = {**BODY, "input": _IDS} if variant.endswith("token ids") else BODY
                    trips, overheads = measure(base, args.requests, body)
                finally:
                    stop(proc)
                results[variant][0].extend(trips)
                results[variant][1].extend(overheads)
        tokenise_ms, tokens = tokenising_time(model_dir)
    bare = {False: statistics.median(results["bare"][0]), True: statistics.median(results["bare, token ids"][0])}
    print(f"embeddings of {len(INPUTS)} inputs ({tokens} tokens), c=1, {args.rounds} x {args.requests} requests "
          f"per variant; tokenising them takes {tokenise_ms:.3f} ms (p50)")
    print("| variant | round trip p50 ms | added vs bare ms | X-Warmgate-Overhead-Ms p50 | p99 |")
    print("|---|---|---|---|---|")
    for variant, (trips, overheads) in results.items():
        trip = statistics.median(trips)
        own = (f"{statistics.median(overheads):.3f} | {statistics.quantiles(overheads, n=100)[98]:.3f}"
               if overheads else "- | -")
        print(f"| {variant} | {trip:.2f} | {trip - bare[variant.endswith('token ids')]:+.2f} | {own} |")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()

"""The gateway-vs-bare comparison the pipeline benches share.

A *case* is one pipeline with a tiny model: how to build the model and the HTTP request.
``compare(cases, ...)`` builds the models, starts ``warmgate serve`` with them warm and the bare
Litestar app of ``bare_pipelines.py`` with the same runners on the same models (each in its own
uvicorn subprocess on 127.0.0.1), then for each case alternates bare and gateway runs of the
same request bodies at c=1 and c=4 (interleaved rounds, so the VM's drift hits both alike) and
prints the medians.
"""

from __future__ import annotations

import http.client
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from processes import free_port, serve_gateway, stop

__all__ = ["Case", "compare", "drive", "png", "tiny_model"]

CONCURRENCY = (1, 4)


@dataclass
class Case:
    pipeline: str
    build: Callable[[Path], None]
    """Writes the tiny model into a directory."""
    body: dict[str, Any]
    """JSON body, or the text fields of a multipart form when ``files`` is set."""
    files: dict[str, tuple[str, bytes, str]] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """The function's options in the gateway."""


def tiny_model(builder: str) -> Callable[[Path], None]:
    """``Case.build`` for one of ``warmgate.testing.models``' builders, by name."""
    def build(directory: Path) -> None:
        from warmgate.testing import models

        getattr(models, builder)(directory)

    return build


def png(width: int, height: int) -> bytes:
    """A one-colour PNG upload."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 60, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


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


def _caller(case: Case, base: str, overheads: list[float] | None) -> Callable[[], None]:
    """Posts one request; appends the gateway's own time (``X-Warmgate-Overhead-Ms``) to
    ``overheads`` unless it is ``None`` (the bare server sends none).

    The body is encoded once (httpx builds the multipart form) and sent over a kept-alive
    ``http.client`` connection per thread: on this VM httpx's client adds 2-3 ms per request
    after an idle wait, more than the gateway itself, which would blur what is measured."""
    form = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in case.body.items()}
    encoded = (httpx.Request("POST", f"{base}/{case.pipeline}", json=case.body) if case.files is None
               else httpx.Request("POST", f"{base}/{case.pipeline}", data=form, files=case.files))
    body = encoded.read()
    headers = {"Content-Type": encoded.headers["content-type"], "Content-Length": str(len(body))}
    host, port = encoded.url.host, encoded.url.port
    local = threading.local()

    def request() -> None:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(host, port, timeout=120)
        connection.request("POST", f"/{case.pipeline}", body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{case.pipeline}: {response.status} {payload[:300]!r}")
        if overheads is not None:
            overheads.append(float(response.getheader("x-warmgate-overhead-ms")))

    request()  # warm-up
    return request


def _start_gateway(functions: list[dict[str, Any]], root: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = root / "serverless.yaml"
    gateway = {"access_log": False, "log_level": "warning", "cache_dir": str(root)}  # its own ledger, not ~/.cache's
    config.write_text(json.dumps({"gateway": gateway, "functions": functions}))
    proc, base = serve_gateway(config)
    wanted = {f["pipeline"] for f in functions}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            health = httpx.get(base + "/health", timeout=2)
            listed = [f for f in httpx.get(base + "/functions", timeout=2).json()["functions"] if f["pipeline"] in wanted]
        except httpx.HTTPError:
            time.sleep(0.2)  # not up yet
            continue
        failed = [f"{f['name']}: {f['last_error']}" for f in listed if f["state"] == "error"]
        if failed:
            stop(proc)
            sys.exit(f"error: {'; '.join(failed)}")
        if health.status_code == 200 and {f["state"] for f in listed} <= {"idle", "warm"}:
            return proc, base
        time.sleep(0.2)
    stop(proc)
    sys.exit("error: warmgate serve did not load the functions")


def _start_bare(functions: list[dict[str, Any]], root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``bare_pipelines.py`` on a free port, once its models are loaded."""
    listed = root / "bare-functions.json"
    listed.write_text(json.dumps(functions))
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_pipelines.py")), str(listed), str(port)],
                            stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass  # not listening yet: it is still loading its models
        time.sleep(0.2)
    stop(proc)
    sys.exit("error: the bare server did not start (its stderr is above)")


def compare(cases: list[Case], duration: float, rounds: int) -> None:
    """Measure every case both ways and print the table."""
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    overheads: dict[str, list[float]] = {case.pipeline: [] for case in cases}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = {case.pipeline: root / case.pipeline for case in cases}
        for case in cases:
            case.build(models[case.pipeline])
        functions = [{"pipeline": case.pipeline, "model_id": str(models[case.pipeline]), "options": case.options}
                     for case in cases]
        proc, base = _start_gateway([{**f, "warm": True, "max_queue": 64} for f in functions], root)
        bare_proc, bare_base = _start_bare(functions, root)
        try:
            for case in cases:
                callers = {"bare": _caller(case, bare_base, None),
                           "warmgate": _caller(case, base, overheads[case.pipeline])}
                for _ in range(rounds):
                    for c in CONCURRENCY:
                        for variant, call in callers.items():
                            results.setdefault((case.pipeline, variant, c), []).append(drive(call, c, duration))
        finally:
            stop(bare_proc)
            stop(proc)

    def median(pipeline: str, variant: str, c: int) -> dict[str, float]:
        runs = results[(pipeline, variant, c)]
        return {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms")}

    print(f"{'pipeline':<20}{'c':>3}{'bare req/s':>12}{'p50 ms':>9}{'warmgate req/s':>16}{'p50 ms':>9}{'ratio':>8}"
          f"{'added p50 ms':>14}{'gateway ms':>12}")
    for case in cases:
        for c in CONCURRENCY:
            b, g = median(case.pipeline, "bare", c), median(case.pipeline, "warmgate", c)
            extra = (f"{g['p50_ms'] - b['p50_ms']:>14.1f}{statistics.median(overheads[case.pipeline]):>12.2f}"
                     if c == 1 else "")
            print(f"{case.pipeline:<20}{c:>3}{b['rps']:>12.2f}{b['p50_ms']:>9.1f}{g['rps']:>16.2f}{g['p50_ms']:>9.1f}"
                  f"{g['rps'] / b['rps']:>8.3f}{extra}")
    print("\ngateway ms = p50 of X-Warmgate-Overhead-Ms: the gateway's own time per request (routing, validation, "
          "upload decoding, JSON), without the model and its output encoding.")
    print(f"medians of {rounds} interleaved rounds of {duration:g} s; ratio = warmgate req/s / bare req/s "
          "(target >= 0.95).\nBoth servers run one request at a time per model, so at c=4 each queues and its "
          "p50 is about four service times.\nThe servers and the clients share the machine's cores.")

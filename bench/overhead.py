"""Measure warmgate's own per-request overhead against a bare Litestar app.

Serves a no-op JSON pipeline two ways, each with uvicorn (uvloop + httptools) in its own
subprocess on 127.0.0.1, one server at a time, and loads it with ``wrk``:

* ``bare``: a plain Litestar ``POST /noop`` that decodes and encodes with msgspec;
* ``warmgate`` / ``warmgate+log``: the same no-op through ``create_app`` (auth, validation,
  function acquire, Prometheus metrics), without and with the JSON access log;
* ``warmgate+price``: priced (a quote and its headers on every response), no ledger;
* ``warmgate+ledger``: priced, each request committed to the SQLite usage ledger (fsync'd)
  before its response ends;
* ``warmgate+keys``: as ``warmgate+ledger``, with ``auth.keys``: a key made with the key store,
  each request's quote held against its balance and settled with its ledger row.
* ``warmgate+tracing``: as ``warmgate``, every request traced (``tracing.sample_ratio: 1``) and
  exported to a local OTLP/HTTP receiver in the driver's process. Target: <= 10% throughput
  cost against ``warmgate`` at c=64.
* ``warmgate@baseline`` (with ``--baseline DIR``): the ``warmgate`` server run from another
  checkout (``PYTHONPATH=DIR``), e.g. main before tracing: ``warmgate`` against it is what
  tracing costs when it is off. Target: 0% (within the noise).

Four more comparisons, each behind its flag (instead of the table above):

* ``--pricing``: the cost of keys and the ledger, ``warmgate+keys`` against ``warmgate+price``,
  on the no-op pipeline and on a 5 ms one (an async runner that sleeps 5 ms), at c=1 and c=64.
  Targets: <= 10% on the 5 ms pipeline at both, <= 25% on the no-op at c=64.
* ``--store``: ``warmgate+keys`` on the 5 ms pipeline at c=64 with its keys and ledger in the
  SQLite file against a throwaway PostgreSQL (``warmgate.testing.postgres``, fsync on, as the
  SQLite ledger's ``ledger_sync: full``) through ``pricing.database``.
* ``--tracing``: ``warmgate+tracing`` against ``warmgate`` on the no-op pipeline and on the 5 ms
  one, at c=1 and c=64, with the server's CPU per request; the two servers of a pipeline side by
  side, loaded in turn (``--rounds`` runs each, medians), since this VM drifts.
* ``--workers``: a gateway relaying ``/echo`` (``executor: remote``, unpriced) to an upstream
  warmgate running the echo pipeline in process (an instant runner), in one worker process and in
  two (``serve --workers 2``: ``warmgate.testing.process``, as tests/core/test_workers.py runs it), at
  c=64. The upstream, the workers and wrk all share the machine's cores.

Usage: ``python bench/overhead.py [--duration 10] [--rounds 3] [--json] [--baseline DIR] [--pricing |
--store | --workers | --tracing]``. Needs ``wrk`` (``apt-get install -y wrk``). Server and wrk share the machine's cores,
so compare the numbers with each other, not with other machines; the server's CPU time per request
(``CPU us/req``) is the number the machine's other load disturbs least. This is a script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from processes import free_port, stop

__test__ = False  # never collected by pytest

VARIANTS = ("bare", "warmgate", "warmgate+log", "warmgate+price", "warmgate+ledger", "warmgate+keys", "warmgate+tracing")
BASELINE = "warmgate@baseline"
"""The ``warmgate`` server from the ``--baseline`` checkout."""
_PRICED = ("warmgate+price", "warmgate+ledger", "warmgate+keys")
LEVELS = ((1, 1), (2, 64))  # (wrk threads, connections)
API_KEY = "bench-key"
BODY = b'{"prompt":"hello","model_id":"noop"}'
ECHO_BODY = b'{"prompt":"hello"}'
WARMUP_SECONDS = 2
SLOW_MS = 5.0
"""The runner time of the "5 ms pipeline"."""

# wrk prints one JSON line from done() so that no human-oriented output has to be parsed.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = 'BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\nRESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": %d, "non_2xx": %d}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


class NoopRequest(msgspec.Struct):
    prompt: str
    model_id: str = ""


class NoopResponse(msgspec.Struct):
    text: str


# -- servers (run in the subprocess) ----------------------------------------------------


def bare_app() -> Litestar:
    """A plain Litestar app: POST /noop decodes and encodes with msgspec; GET /health."""
    decoder = msgspec.json.Decoder(NoopRequest)

    @post("/noop", status_code=200)
    async def noop(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = decoder.decode(await request.body())
        return Response(msgspec.json.encode(NoopResponse(text=body.prompt)), media_type="application/json")

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "OK"}

    return Litestar(route_handlers=[noop, health], openapi_config=None, logging_config=None)


class NoopRunner:
    """The no-op model: echoes the prompt."""

    async def __call__(self, req: NoopRequest) -> NoopResponse:
        return NoopResponse(text=req.prompt)


class SlowRunner:
    """The 5 ms model: echoes the prompt after ``SLOW_MS`` (awaited, so requests overlap)."""

    async def __call__(self, req: NoopRequest) -> NoopResponse:
        await asyncio.sleep(SLOW_MS / 1000)
        return NoopResponse(text=req.prompt)


def warmgate_app(access_log: bool, priced: bool = False, ledger: str = "off", keys: bool = False,
                 ledger_sync: str = "full", slow: bool = False, database: str = "", otlp: str = "") -> Litestar:
    """The no-op pipeline (``slow``: the 5 ms one) through the full warmgate path, auth on;
    ``priced`` quotes every request; with a ``ledger`` file (or a PostgreSQL ``database``)
    every request is committed to it; ``keys`` requires keys from it; with an ``otlp``
    endpoint every request is traced and exported there."""
    from warmgate import FunctionConfig, PipelineSpec, Settings, create_app
    from warmgate.core.settings import AuthSettings, GatewaySettings, Price
    from warmgate.plugins.pricing.settings import PricingSettings

    runner = SlowRunner() if slow else NoopRunner()
    spec = PipelineSpec(name="noop", request=NoopRequest, response=NoopResponse,
                        load=lambda model_id, options: runner, default_model_id="noop")
    settings = Settings(
        gateway=GatewaySettings(access_log=access_log, log_format="json"),
        auth=AuthSettings(api_keys=[] if keys else [API_KEY], keys=keys),
        functions=[FunctionConfig(pipeline="noop", model_id="noop", max_concurrency=1024, max_queue=1024, warm=True,
                                  price=Price(price_per_unit=1) if priced else None)],
        sections=[PricingSettings(ledger="" if database else ledger, ledger_sync=ledger_sync, database=database)],
    )
    if otlp:
        from warmgate.core.tracing.settings import TracingSettings

        settings.sections.append(TracingSettings(endpoint=otlp, sample_ratio=1.0))
    return create_app(settings, pipelines={"noop": spec})


def serve(variant: str, port: int, ledger: str, ledger_sync: str, slow: bool, database: str, otlp: str = "") -> None:
    """Run one server variant in this process until terminated."""
    import uvicorn

    app = bare_app() if variant == "bare" else warmgate_app(
        access_log=variant == "warmgate+log", priced=variant in _PRICED,
        ledger=ledger if variant in ("warmgate+ledger", "warmgate+keys") else "off", keys=variant == "warmgate+keys",
        ledger_sync=ledger_sync, slow=slow, database=database, otlp=otlp if variant == "warmgate+tracing" else "")
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_config=None, access_log=False)


# -- driver -----------------------------------------------------------------------------


def wait_ready(proc: subprocess.Popen[bytes], base: str, variant: str, token: str, timeout: float = 30.0,
               path: str = "/noop", body: bytes = BODY) -> None:
    """Poll GET /health until it answers and the warm function has loaded, then check one POST."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            sys.exit(f"error: {variant} server exited with {proc.returncode}; "
                     f"run `{sys.executable} {__file__} --serve {variant}` to see why")
        try:
            with urllib.request.urlopen(base + "/health", timeout=1) as resp:
                if json.loads(resp.read()).get("status") not in ("LOADING", "ERROR"):
                    break
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            sys.exit(f"error: {variant} server not ready after {timeout:.0f}s")
        time.sleep(0.1)
    req = urllib.request.Request(base + path, data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            answer = json.loads(resp.read())
    except OSError as exc:  # HTTPError included
        sys.exit(f"error: {variant} POST {path} failed: {exc}")
    if answer.get("text") != "hello":
        sys.exit(f"error: {variant} POST {path} answered an unexpected body: {answer!r}")


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used: per request, it is what a server costs even
    on a machine whose other processes make its throughput noisy."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(wrk: str, script: Path, url: str, threads: int, conns: int, seconds: int) -> dict[str, float]:
    """One wrk run; requests/s, p50 and p99 in ms, and error counts."""
    cmd = [wrk, f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"error: `{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    raw = json.loads(line.removeprefix("RESULT "))
    return {"rps": raw["requests"] / (raw["duration_us"] / 1e6), "p50_ms": raw["p50_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000, "requests": raw["requests"], "errors": raw["errors"],
            "non_2xx": raw["non_2xx"]}


def measure(proc: subprocess.Popen[bytes], port: int, variant: str, token: str, wrk: str, tmp: Path, duration: int,
            levels: tuple[tuple[int, int], ...] = LEVELS, path: str = "/noop",
            body: bytes = BODY) -> dict[str, dict[str, float]]:
    """Wait for the server ``proc`` on ``port``, warm up and measure every concurrency level of
    ``POST path``, stop it."""
    script = _script(tmp, port, token, body)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, dict[str, float]] = {}
    try:
        wait_ready(proc, base, variant, token, path=path, body=body)
        for threads, conns in levels:
            run_wrk(wrk, script, base + path, threads, conns, WARMUP_SECONDS)  # discarded
            cpu = _cpu_seconds(proc.pid)
            result = run_wrk(wrk, script, base + path, threads, conns, duration)
            result["cpu_us"] = (_cpu_seconds(proc.pid) - cpu) / max(1, result["requests"]) * 1e6
            if result["errors"] or result["non_2xx"]:
                print(f"warning: {variant} c={conns}: {result['errors']:.0f} socket errors, "
                      f"{result['non_2xx']:.0f} non-2xx responses", file=sys.stderr)
            results[f"c{conns}"] = result
    finally:
        stop(proc, timeout=10)
    return results


def bench_variant(variant: str, wrk: str, tmp: Path, duration: int, sync: str, *, slow: bool = False,
                  database: str = "", levels: tuple[tuple[int, int], ...] = LEVELS, otlp: str = "",
                  baseline: str = "") -> dict[str, dict[str, float]]:
    """Start ``variant``'s server (a fresh ledger, or the PostgreSQL ``database``, and a key
    when it needs one; ``slow``: the 5 ms pipeline; ``otlp``: where ``warmgate+tracing``
    exports; ``baseline``: the checkout ``warmgate@baseline`` runs from) and measure it."""
    port = free_port()
    ledger = tmp / f"usage-{port}.sqlite"
    token = API_KEY
    if variant == "warmgate+keys":
        from warmgate.plugins.pricing.keys import KeyStore

        store = KeyStore(database or ledger)
        _, token = store.create(name="bench", credit=10**30)
        store.close()
    env = {**os.environ, "PYTHONPATH": baseline} if variant == BASELINE else None
    served = "warmgate" if variant == BASELINE else variant
    proc = subprocess.Popen([sys.executable, __file__, "--serve", served, "--port", str(port), "--ledger", str(ledger),
                             "--ledger-sync", sync, "--database", database, "--otlp", otlp, *(["--slow"] if slow else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return measure(proc, port, variant, token, wrk, tmp, duration, levels)


def bench_pricing(wrk: str, tmp: Path, duration: int, sync: str, rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    """``--pricing``: priced with and without keys + ledger, on the no-op and the 5 ms pipeline."""
    runs = [{f"{variant}{'@5ms' if slow else ''}": bench_variant(variant, wrk, tmp, duration, sync, slow=slow)
             for slow in (False, True) for variant in ("warmgate+price", "warmgate+keys")} for _ in range(rounds)]
    return median_of_rounds(runs)


def bench_tracing(wrk: str, tmp: Path, duration: int, sync: str, rounds: int,
                  otlp: str) -> dict[str, dict[str, dict[str, float]]]:
    """``--tracing``: every request traced and exported, against tracing off, on the no-op and
    the 5 ms pipeline. The two servers of a pipeline run side by side and are loaded in turn,
    one run each per round (in alternating order), so that the machine's drift, which on this
    VM moves a server's numbers by a fifth from one minute to the next, falls on both alike."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for slow in (False, True):
        servers = {}
        for variant in ("warmgate", "warmgate+tracing"):
            port = free_port()
            proc = subprocess.Popen([sys.executable, __file__, "--serve", variant, "--port", str(port), "--ledger",
                                     str(tmp / f"usage-{port}.sqlite"), "--ledger-sync", sync, "--otlp", otlp,
                                     *(["--slow"] if slow else [])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            servers[f"{variant}{'@5ms' if slow else ''}"] = (proc, port)
        try:
            for name, (proc, port) in servers.items():
                wait_ready(proc, f"http://127.0.0.1:{port}", name, API_KEY)
            runs: dict[str, dict[str, list[dict[str, float]]]] = {name: {} for name in servers}
            for threads, conns in LEVELS:
                order = list(servers)
                for name in order:
                    run_wrk(wrk, _script(tmp, servers[name][1]), _url(servers[name][1]), threads, conns, WARMUP_SECONDS)
                for round_ in range(rounds):
                    for name in order if round_ % 2 == 0 else order[::-1]:
                        proc, port = servers[name]
                        cpu = _cpu_seconds(proc.pid)
                        result = run_wrk(wrk, _script(tmp, port), _url(port), threads, conns, duration)
                        result["cpu_us"] = (_cpu_seconds(proc.pid) - cpu) / max(1, result["requests"]) * 1e6
                        runs[name].setdefault(f"c{conns}", []).append(result)
            for name, levels in runs.items():
                results[name] = {level: {k: statistics.median(r[k] for r in got) for k in got[0]}
                                 for level, got in levels.items()}
        finally:
            for proc, _ in servers.values():
                stop(proc, timeout=10)
    return results


def _script(tmp: Path, port: int, token: str = API_KEY, body: bytes = BODY) -> Path:
    """The wrk script that POSTs ``body`` with ``token`` to the server on ``port``."""
    script = tmp / f"post-{port}.lua"
    script.write_text(WRK_SCRIPT.replace("TOKEN", token).replace("BODY", body.decode()))
    return script


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}/noop"


def bench_store(wrk: str, tmp: Path, duration: int, sync: str, rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    """``--store``: keys + ledger on the 5 ms pipeline at c=64 in SQLite, then in PostgreSQL."""
    from warmgate.testing.postgres import PostgresServer

    server = PostgresServer(fsync=True).init()
    server.start()
    try:
        runs = [{f"{store}@5ms": bench_variant("warmgate+keys", wrk, tmp, duration, sync, slow=True,
                                               database=server.create_database() if store == "postgresql" else "",
                                               levels=LEVELS[1:])
                 for store in ("sqlite", "postgresql")} for _ in range(rounds)]
    finally:
        try:
            server.stop("immediate")
        finally:
            server.remove()
    return median_of_rounds(runs)


def _echo_gateway(config: dict[str, Any], tmp: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    """``warmgate.testing.process``: the echo pipeline's gateway in ``workers`` processes."""
    port = free_port()
    path = tmp / f"echo-{port}.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "warmgate.testing.process", str(path), str(port), str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return proc, port


def bench_workers(wrk: str, tmp: Path, duration: int, rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    """``--workers``: a relay in one worker and in two, to an echo upstream, at c=64."""
    quiet = {"access_log": False, "log_level": "warning", "cache_dir": str(tmp)}
    upstream, upstream_port = _echo_gateway({"gateway": quiet, "pricing": {"ledger": "off"}, "functions": [
        {"pipeline": "echo", "model_id": "echo-1", "max_concurrency": 1024, "max_queue": 1024, "warm": True}]}, tmp, 1)
    relay = {"gateway": quiet, "auth": {"api_keys": [API_KEY]}, "pricing": {"ledger": "off"}, "functions": [
        {"pipeline": "echo", "model_id": "echo-1", "executor": "remote", "url": f"http://127.0.0.1:{upstream_port}",
         "max_concurrency": 1024, "max_queue": 1024}]}
    try:
        wait_ready(upstream, f"http://127.0.0.1:{upstream_port}", "upstream", API_KEY, path="/echo", body=ECHO_BODY)
        runs = [{f"relay, {n} worker{'s' if n > 1 else ''}": measure(*_echo_gateway(relay, tmp, n), "relay", API_KEY,
                                                                      wrk, tmp, duration, LEVELS[1:], "/echo", ECHO_BODY)
                 for n in (1, 2)} for _ in range(rounds)]
    finally:
        stop(upstream, timeout=10)
    return median_of_rounds(runs)


def median_of_rounds(rounds: list[dict[str, dict[str, dict[str, float]]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per variant and level, the median of each number over the rounds (the VM is noisy)."""
    first = rounds[0]
    return {v: {level: {k: statistics.median(r[v][level][k] for r in rounds) for k in first[v][level]}
                for level in first[v]} for v in first}


def derived(results: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per warmgate variant: throughput ratio vs bare at c=64 and added p50 at c=1 (ms)."""
    bare = results["bare"]
    return {v: {"rps_ratio_c64": results[v]["c64"]["rps"] / bare["c64"]["rps"],
                "added_p50_ms_c1": results[v]["c1"]["p50_ms"] - bare["c1"]["p50_ms"]} for v in results if v != "bare"}


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def table(results: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    width = max(14, *(len(v) + 2 for v in results))
    lines = [f"{'server':<{width}}{'conc':>5}{'req/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}", "-" * (width + 46)]
    for variant, levels in results.items():
        for key, r in levels.items():
            lines.append(f"{variant:<{width}}{key[1:]:>5}{r['rps']:>11.0f}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}"
                         f"{r.get('cpu_us', float('nan')):>12.1f}")
    return [*lines, ""]


def _cost(results: dict[str, dict[str, dict[str, float]]], pipeline: str, level: str, target: float | None) -> str:
    """The keys+ledger throughput cost on ``pipeline`` ("" or "@5ms") at ``level``."""
    cost = 1 - results[f"warmgate+keys{pipeline}"][level]["rps"] / results[f"warmgate+price{pipeline}"][level]["rps"]
    name = "5 ms pipeline" if pipeline else "no-op pipeline"
    goal = f"target <= {target:.0%}: {_verdict(cost <= target)}" if target is not None else "no target"
    return f"keys+ledger throughput cost vs priced without them, {name}, c={level[1:]}: {cost:.1%} ({goal})"


def report(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """The table and the derived overhead lines with their targets."""
    lines = table(results)
    for variant, d in derived(results).items():
        ratio, added = d["rps_ratio_c64"], d["added_p50_ms_c1"]
        lines += [f"{variant}/bare throughput at c=64: {ratio:.3f} (target >= 0.80: {_verdict(ratio >= 0.80)})",
                  f"{variant} added p50 at c=1: {added:+.3f} ms (target < 0.3 ms: {_verdict(added < 0.3)})"]
    if "warmgate+price" in results and "warmgate+keys" in results:  # the pricing issue's target (--pricing: 5 ms)
        lines += [_cost(results, "", "c1", None), _cost(results, "", "c64", 0.25)]
    for variant, against, what, target in (("warmgate+tracing", "warmgate", "tracing, sampling 1.0", 0.10),
                                           ("warmgate", BASELINE, "tracing off, against the baseline", 0.0)):
        if variant in results and against in results:
            lines += _relative(results, variant, against, what, target)
    return "\n".join(lines)


def _relative(results: dict[str, dict[str, dict[str, float]]], variant: str, against: str, what: str,
              target: float) -> list[str]:
    """``variant``'s throughput cost and server CPU per request against ``against``, at c=1 and
    c=64 (the target is for c=64; a target of 0 allows this machine's noise, 3%)."""
    lines = []
    for level in ("c1", "c64"):
        cost = 1 - results[variant][level]["rps"] / results[against][level]["rps"]
        cpu = results[variant][level]["cpu_us"] / results[against][level]["cpu_us"] - 1
        met = cost <= target if target else abs(cost) <= 0.03
        goal = (f"target {'<= ' if target else ''}{target:.0%}{'' if target else ' within 3%'}: {_verdict(met)}"
                if level == "c64" else "no target")
        lines.append(f"{what}: throughput cost vs {against}, c={level[1:]}: {cost:.1%} ({goal}); "
                     f"server CPU per request {cpu:+.1%}")
    return lines


def report_tracing(results: dict[str, dict[str, dict[str, float]]]) -> str:
    return "\n".join([*table(results), *_relative(results, "warmgate+tracing", "warmgate", "tracing, no-op pipeline", 0.10),
                      *_relative(results, "warmgate+tracing@5ms", "warmgate@5ms", "tracing, 5 ms pipeline", 0.10)])


def report_pricing(results: dict[str, dict[str, dict[str, float]]]) -> str:
    return "\n".join([*table(results), _cost(results, "", "c1", None), _cost(results, "", "c64", 0.25),
                      _cost(results, "@5ms", "c1", 0.10), _cost(results, "@5ms", "c64", 0.10)])


def report_store(results: dict[str, dict[str, dict[str, float]]]) -> str:
    ratio = results["postgresql@5ms"]["c64"]["rps"] / results["sqlite@5ms"]["c64"]["rps"]
    return "\n".join([*table(results), f"PostgreSQL/SQLite throughput, keys + ledger, 5 ms pipeline, c=64: {ratio:.3f} "
                      "(PostgreSQL on this machine, fsync on; SQLite ledger_sync as --ledger-sync)"])


def report_workers(results: dict[str, dict[str, dict[str, float]]]) -> str:
    one, two = (r["c64"]["rps"] for r in results.values())
    return "\n".join([*table(results), f"2 workers / 1 worker throughput, relay to an instant upstream, c=64: "
                      f"{two / one:.3f}", "the upstream (one warmgate process), the workers and wrk share the "
                      f"machine's {os.cpu_count()} cores: a second worker competes with them for CPU"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="repeat every variant this many times, interleaved, and report medians (default 3)")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=8000, help=argparse.SUPPRESS)
    parser.add_argument("--ledger", default="off", help=argparse.SUPPRESS)
    parser.add_argument("--database", default="", help=argparse.SUPPRESS)
    parser.add_argument("--slow", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--otlp", default="", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", default="",
                        help="a checkout (e.g. main before a change) whose warmgate server is measured too, as warmgate@baseline")
    parser.add_argument("--ledger-sync", choices=("full", "normal"), default="full",
                        help="pricing.ledger_sync of the ledger and keys servers (default full)")
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma list of servers to run (default: all)")
    extra = parser.add_mutually_exclusive_group()
    extra.add_argument("--pricing", action="store_true", help="keys + ledger cost on the no-op and 5 ms pipelines")
    extra.add_argument("--store", action="store_true", help="PostgreSQL against SQLite, 5 ms pipeline, c=64")
    extra.add_argument("--workers", action="store_true", help="a relay in 2 worker processes against 1, c=64")
    extra.add_argument("--tracing", action="store_true", help="tracing on against off, no-op and 5 ms pipelines")
    args = parser.parse_args()
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    if args.serve:
        serve(args.serve, args.port, args.ledger, args.ledger_sync, args.slow, args.database, args.otlp)
        return
    variants = [v for v in VARIANTS if v in args.only.split(",")] + ([BASELINE] if args.baseline else [])
    if "bare" not in variants:
        parser.error("--only must include bare: every ratio is against it")
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("error: wrk is not installed; install it with `apt-get update && apt-get install -y wrk`")
    if args.tracing:
        from warmgate.testing.otlp import OTLPReceiver

        with tempfile.TemporaryDirectory() as tmp, OTLPReceiver(decode_spans=False) as receiver:
            results = bench_tracing(wrk, Path(tmp), args.duration, args.ledger_sync, args.rounds, receiver.endpoint)
        print(json.dumps({"duration_s": args.duration, "results": results}, indent=2) if args.json
              else report_tracing(results))
        return
    if args.pricing or args.store or args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            if args.pricing:
                results, text = bench_pricing(wrk, Path(tmp), args.duration, args.ledger_sync, args.rounds), report_pricing
            elif args.store:
                results, text = bench_store(wrk, Path(tmp), args.duration, args.ledger_sync, args.rounds), report_store
            else:
                results, text = bench_workers(wrk, Path(tmp), args.duration, args.rounds), report_workers
        print(json.dumps({"duration_s": args.duration, "results": results}, indent=2) if args.json else text(results))
        return
    print(f"{len(variants)} servers x c={[c for _, c in LEVELS]} x {args.rounds} rounds, {args.duration}s each after "
          f"a {WARMUP_SECONDS}s warm-up; medians; server and wrk share the machine's cores", file=sys.stderr)
    from warmgate.testing.otlp import OTLPReceiver

    with tempfile.TemporaryDirectory() as tmp, OTLPReceiver(decode_spans=False) as receiver:  # a collector's endpoint
        rounds = [{v: bench_variant(v, wrk, Path(tmp), args.duration, args.ledger_sync, otlp=receiver.endpoint,
                                    baseline=args.baseline) for v in variants}
                  for _ in range(args.rounds)]
    if "warmgate+tracing" in variants:
        print(f"warmgate+tracing exported {receiver.bytes / 1e6:.1f} MB in {receiver.posts} OTLP posts", file=sys.stderr)
    results = median_of_rounds(rounds)
    if args.json:
        print(json.dumps({"duration_s": args.duration, "rounds": rounds, "results": results,
                          "derived": derived(results)}, indent=2))
    else:
        print(report(results))


if __name__ == "__main__":
    main()

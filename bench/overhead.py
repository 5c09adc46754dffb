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

Usage: ``python bench/overhead.py [--duration 10] [--rounds 3] [--json]``. Needs ``wrk``
(``apt-get install -y wrk``). Server and wrk share the machine's cores, so compare the
numbers with each other, not with other machines. This is a script, not a test.
"""

from __future__ import annotations

import argparse
import json
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

VARIANTS = ("bare", "warmgate", "warmgate+log", "warmgate+price", "warmgate+ledger", "warmgate+keys")
_PRICED = ("warmgate+price", "warmgate+ledger", "warmgate+keys")
LEVELS = ((1, 1), (2, 64))  # (wrk threads, connections)
API_KEY = "bench-key"
BODY = b'{"prompt":"hello","model_id":"noop"}'
WARMUP_SECONDS = 2

# wrk prints one JSON line from done() so that no human-oriented output has to be parsed.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '""" + BODY.decode() + """'
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


def warmgate_app(access_log: bool, priced: bool = False, ledger: str = "off", keys: bool = False,
                 ledger_sync: str = "full") -> Litestar:
    """The no-op pipeline through the full warmgate path, auth on; ``priced`` quotes every
    request; with a ``ledger`` file every request is committed to it; ``keys`` requires keys
    from it."""
    from warmgate import FunctionConfig, PipelineSpec, Settings, create_app
    from warmgate.core.settings import AuthSettings, GatewaySettings, Price, PricingSettings

    spec = PipelineSpec(name="noop", request=NoopRequest, response=NoopResponse,
                        load=lambda model_id, options: NoopRunner(), default_model_id="noop")
    settings = Settings(
        gateway=GatewaySettings(access_log=access_log, log_format="json"),
        auth=AuthSettings(api_keys=[] if keys else [API_KEY], keys=keys),
        functions=[FunctionConfig(pipeline="noop", model_id="noop", max_concurrency=1024, max_queue=1024, warm=True,
                                  price=Price(price_per_unit=1) if priced else None)],
        pricing=PricingSettings(ledger=ledger, ledger_sync=ledger_sync),
    )
    return create_app(settings, pipelines={"noop": spec})


def serve(variant: str, port: int, ledger: str, ledger_sync: str) -> None:
    """Run one server variant in this process until terminated."""
    import uvicorn

    app = bare_app() if variant == "bare" else warmgate_app(
        access_log=variant == "warmgate+log", priced=variant in _PRICED,
        ledger=ledger if variant in ("warmgate+ledger", "warmgate+keys") else "off", keys=variant == "warmgate+keys",
        ledger_sync=ledger_sync)
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_config=None, access_log=False)


# -- driver -----------------------------------------------------------------------------


def wait_ready(proc: subprocess.Popen[bytes], base: str, variant: str, token: str, timeout: float = 30.0) -> None:
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
    req = urllib.request.Request(base + "/noop", data=BODY, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            answer = json.loads(resp.read())
    except OSError as exc:  # HTTPError included
        sys.exit(f"error: {variant} POST /noop failed: {exc}")
    if answer != {"text": "hello"}:
        sys.exit(f"error: {variant} POST /noop answered an unexpected body: {answer!r}")


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


def bench_variant(variant: str, wrk: str, tmp: Path, duration: int, sync: str) -> dict[str, dict[str, float]]:
    """Start ``variant``'s server (a fresh ledger, and a key when it needs one), warm up and
    measure every concurrency level, stop it."""
    port = free_port()
    ledger = tmp / f"usage-{port}.sqlite"
    token = API_KEY
    if variant == "warmgate+keys":
        from warmgate.pricing.keys import KeyStore

        store = KeyStore(ledger)
        _, token = store.create(name="bench", credit=10**30)
        store.close()
    script = tmp / f"post-{port}.lua"
    script.write_text(WRK_SCRIPT.replace("TOKEN", token))
    proc = subprocess.Popen([sys.executable, __file__, "--serve", variant, "--port", str(port), "--ledger", str(ledger),
                             "--ledger-sync", sync],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, dict[str, float]] = {}
    try:
        wait_ready(proc, base, variant, token)
        for threads, conns in LEVELS:
            run_wrk(wrk, script, base + "/noop", threads, conns, WARMUP_SECONDS)  # discarded
            result = run_wrk(wrk, script, base + "/noop", threads, conns, duration)
            if result["errors"] or result["non_2xx"]:
                print(f"warning: {variant} c={conns}: {result['errors']:.0f} socket errors, "
                      f"{result['non_2xx']:.0f} non-2xx responses", file=sys.stderr)
            results[f"c{conns}"] = result
    finally:
        stop(proc, timeout=10)
    return results


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


def report(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """The table and the derived overhead lines with their targets."""
    lines = [f"{'server':<14}{'conc':>5}{'req/s':>11}{'p50 ms':>9}{'p99 ms':>9}", "-" * 48]
    for variant, levels in results.items():
        for key, r in levels.items():
            lines.append(f"{variant:<14}{key[1:]:>5}{r['rps']:>11.0f}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}")
    lines.append("")
    for variant, d in derived(results).items():
        ratio, added = d["rps_ratio_c64"], d["added_p50_ms_c1"]
        lines += [f"{variant}/bare throughput at c=64: {ratio:.3f} (target >= 0.80: {_verdict(ratio >= 0.80)})",
                  f"{variant} added p50 at c=1: {added:+.3f} ms (target < 0.3 ms: {_verdict(added < 0.3)})"]
    if "warmgate+price" in results and "warmgate+keys" in results:  # the pricing issue's target
        for level in ("c1", "c64"):
            cost = 1 - results["warmgate+keys"][level]["rps"] / results["warmgate+price"][level]["rps"]
            lines.append(f"keys+ledger throughput cost vs priced without them at c={level[1:]}: {cost:.1%} "
                         f"(target <= 10%: {_verdict(cost <= 0.10)})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="repeat every variant this many times, interleaved, and report medians (default 3)")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=8000, help=argparse.SUPPRESS)
    parser.add_argument("--ledger", default="off", help=argparse.SUPPRESS)
    parser.add_argument("--ledger-sync", choices=("full", "normal"), default="full",
                        help="pricing.ledger_sync of the ledger and keys servers (default full)")
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma list of servers to run (default: all)")
    args = parser.parse_args()
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    if args.serve:
        serve(args.serve, args.port, args.ledger, args.ledger_sync)
        return
    variants = [v for v in VARIANTS if v in args.only.split(",")]
    if "bare" not in variants:
        parser.error("--only must include bare: every ratio is against it")
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("error: wrk is not installed; install it with `apt-get update && apt-get install -y wrk`")
    print(f"{len(variants)} servers x c={[c for _, c in LEVELS]} x {args.rounds} rounds, {args.duration}s each after "
          f"a {WARMUP_SECONDS}s warm-up; medians; server and wrk share the machine's cores", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        rounds = [{v: bench_variant(v, wrk, Path(tmp), args.duration, args.ledger_sync) for v in variants}
                  for _ in range(args.rounds)]
    results = median_of_rounds(rounds)
    if args.json:
        print(json.dumps({"duration_s": args.duration, "rounds": rounds, "results": results,
                          "derived": derived(results)}, indent=2))
    else:
        print(report(results))


if __name__ == "__main__":
    main()

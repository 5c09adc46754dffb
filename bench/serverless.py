"""Serverless numbers: cold start, warm throughput through each executor, time back to zero.

* **Cold start (local)**: a fresh ``warmgate serve`` with the tiny chat model as a cold LLM
  function: process start to ``/health``, then zero to first response, split into the function's
  load (the engine's imports, torch and transformers, plus the model) and the rest; then, after it
  has scaled to zero, the next cold start in the same process, which is the model load alone, so
  first minus second is the engine's import time. **Back to zero**: from the last response to the
  function's state ``cold`` with ``idle_timeout: 1``.
* **Warm throughput**: the echo pipeline served by a runner process, called directly and through
  a gateway whose function forwards to it (``executor: remote``), with ``wrk``; once as a no-op
  and once with a 20 ms model (``sleep``), as a real runner has. The target (>= 0.90) is for
  the latter. The no-op is the worst case, with no target: the gateway then does two HTTP
  exchanges per request (the client's and the runner's) to the runner's one, on the same two
  cores as the runner and ``wrk``, so on this machine it cannot pass about 1/3-1/2 of direct.

* **Cold start (ray)**: the same model as an ``executor: ray`` function in a fresh gateway that
  starts a local Ray cluster: the engine (cluster, Serve, the application deployed with 0
  replicas), then zero replicas to first response (a replica takes over the standby worker,
  which has the engine imported, and loads the model), the time back to zero replicas
  (``idle_timeout: 2``), and a second cold start. Then the same with ``scaling.standby: false``
  (a new replica process starts and imports the engine) for comparison.
* Warm throughput also through a ray function (one replica kept: ``min_instances: 1``).

Usage: ``python bench/serverless.py [--duration 5] [--rounds 3]``. Needs ``wrk`` and the
``[ray]`` extra. A script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from processes import free_port, serve_gateway, stop

__test__ = False

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
LEVELS = (1, 16)
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format('\\nRESULT {{"requests": %d, "duration_us": %d, "p50_us": %d, "non_2xx": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), summary.errors.status))
end
"""


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.02)
    sys.exit(f"error: timed out waiting for {what}")


# -- cold start ---------------------------------------------------------------------------


def cold_start(root: Path) -> dict[str, float]:
    from warmgate.core.functions.demo import ensure_demo_model
    from warmgate.core.plugins import get_pipelines

    model = ensure_demo_model(get_pipelines()["llm"].demo, root / "models")
    config = root / "cold.yaml"
    config.write_text(json.dumps({"gateway": {"access_log": False, "log_level": "warning"},
                                  "pricing": {"ledger": "off"},
                                  "functions": [{"pipeline": "llm", "model_id": str(model),
                                                 "scaling": {"idle_timeout": 1}}]}))
    started = time.perf_counter()
    proc, base = serve_gateway(config, cwd=root, env=ENV)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

    def function() -> dict[str, Any]:
        listed = httpx.get(base + "/functions", timeout=2).json()["functions"]
        return next(f for f in listed if f["pipeline"] == "llm")

    try:
        wait_until(lambda: httpx.get(base + "/health", timeout=1).status_code == 200, 60, "the gateway")
        ready = time.perf_counter() - started
        sent = time.perf_counter()
        assert httpx.post(base + "/llm", json=body, timeout=120).status_code == 200
        first = time.perf_counter() - sent
        first_load = function()["load_seconds"]
        answered = time.perf_counter()
        wait_until(lambda: function()["state"] == "cold", 30, "scale to zero")
        to_zero = time.perf_counter() - answered
        sent = time.perf_counter()
        assert httpx.post(base + "/llm", json=body, timeout=120).status_code == 200
        second = time.perf_counter() - sent
        second_load = function()["load_seconds"]
    finally:
        stop(proc)
    return {"process_ready_s": ready, "first_response_s": first, "first_load_s": first_load,
            "engine_import_s": first_load - second_load, "model_load_s": second_load,
            "second_response_s": second, "back_to_zero_s": to_zero}


def ray_cold_start(root: Path, standby: bool = True) -> dict[str, float]:
    from warmgate.core.functions.demo import ensure_demo_model
    from warmgate.core.plugins import get_pipelines

    model = ensure_demo_model(get_pipelines()["llm"].demo, root / "models")
    config = root / "ray-cold.yaml"
    config.write_text(json.dumps({"gateway": {"access_log": False, "log_level": "warning"},
                                  "pricing": {"ledger": "off"}, "ray": {"num_cpus": 2},
                                  "functions": [{"pipeline": "llm", "model_id": str(model), "executor": "ray",
                                                 "warm": True, "scaling": {"idle_timeout": 2, "standby": standby}}]}))
    started = time.perf_counter()
    proc, base = serve_gateway(config, cwd=root, env=ENV)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

    def deployed() -> bool:
        listed = httpx.get(base + "/functions", timeout=2).json()["functions"]
        state = next(f for f in listed if f["pipeline"] == "llm")
        if state["state"] == "error":
            sys.exit(f"error: {state['last_error']}")
        return state["state"] in ("idle", "warm")

    try:
        wait_until(deployed, 120, "the ray function's deployment")
        engine = time.perf_counter() - started
        sent = time.perf_counter()
        assert httpx.post(base + "/llm", json=body, timeout=120).status_code == 200
        first = time.perf_counter() - sent
        sent = time.perf_counter()
        assert httpx.post(base + "/llm", json=body, timeout=120).status_code == 200
        warm = time.perf_counter() - sent
        answered = time.perf_counter()
        wait_until(lambda: _ray_running(base) == 0, 60, "zero replicas")
        to_zero = time.perf_counter() - answered
        sent = time.perf_counter()
        assert httpx.post(base + "/llm", json=body, timeout=120).status_code == 200
        second = time.perf_counter() - sent
    finally:
        stop(proc)
    return {"engine_s": engine, "first_response_s": first, "warm_response_s": warm, "back_to_zero_s": to_zero,
            "second_response_s": second}


def _ray_running(base: str) -> int:
    """Running replicas: Ray names each replica's process ``ray::ServeReplica:<app>:<deployment>``."""
    out = subprocess.run(["pgrep", "-f", "ServeReplica:"], capture_output=True, text=True)
    return len(out.stdout.split())


# -- warm throughput ----------------------------------------------------------------------


def _serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "warmgate.testing.process", str(config), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200, 30, "a server")
    return proc


def wrk(url: str, body: str, conns: int, seconds: int, tmp: Path) -> dict[str, float]:
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=body))
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"error: wrk failed:\n{out}")
    raw = json.loads(line.removeprefix("RESULT "))
    if raw["non_2xx"]:
        sys.exit(f"error: {raw['non_2xx']} non-2xx answers from {url}")
    return {"rps": raw["requests"] / (raw["duration_us"] / 1e6), "p50_ms": raw["p50_us"] / 1000}


def warm_throughput(root: Path, duration: int, rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    runner_port, gateway_port, ray_port = free_port(), free_port(), free_port()
    function = {"pipeline": "echo", "model_id": "echo-1", "max_concurrency": 32, "max_queue": 512}
    quiet = {"gateway": {"access_log": False, "log_level": "warning"}, "pricing": {"ledger": "off"}}
    (root / "runner.yaml").write_text(json.dumps({**quiet, "functions": [function]}))
    (root / "gateway.yaml").write_text(json.dumps({**quiet, "functions": [
        {**function, "executor": "remote", "url": f"http://127.0.0.1:{runner_port}"}]}))
    (root / "ray.yaml").write_text(json.dumps({**quiet, "ray": {"num_cpus": 2}, "functions": [
        {**function, "executor": "ray", "warm": True, "scaling": {"min_instances": 1}, "resources": {"cpu": 0.5}}]}))
    runner = _serve(root / "runner.yaml", runner_port)
    gateway = _serve(root / "gateway.yaml", gateway_port)
    ray_gateway = _serve(root / "ray.yaml", ray_port)
    body = json.dumps({"prompt": "warm up", "model_id": "echo-1"})
    wait_until(lambda: httpx.post(f"http://127.0.0.1:{ray_port}/echo", content=body, timeout=60).status_code == 200,
               120, "the ray replica")
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    try:
        for model, sleep in (("no-op", 0.0), ("20 ms model", 0.02)):
            body = json.dumps({"prompt": "hello", "model_id": "echo-1", "sleep": sleep})
            for _ in range(rounds):
                for route, port in (("direct", runner_port), ("remote", gateway_port), ("ray", ray_port)):
                    for conns in LEVELS:
                        r = wrk(f"http://127.0.0.1:{port}/echo", body, conns, duration, root)
                        cell = results.setdefault(model, {}).setdefault(f"{route} c={conns}", {"rps": [], "p50_ms": []})
                        cell["rps"].append(r["rps"])
                        cell["p50_ms"].append(r["p50_ms"])
    finally:
        stop(ray_gateway)
        stop(gateway)
        stop(runner)
    return {model: {key: {k: statistics.median(v) for k, v in cell.items()} for key, cell in cells.items()}
            for model, cells in results.items()}


def report(cold: dict[str, float], ray_cold: dict[str, float], ray_cold_no_standby: dict[str, float],
           warm: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["cold start, local executor, tiny chat model (transformers)", "-" * 58]
    labels = {"process_ready_s": "process start -> /health", "first_response_s": "zero -> first response",
              "first_load_s": "  of which the function's load", "engine_import_s": "    engine imports (torch, transformers)",
              "model_load_s": "    model load", "second_response_s": "zero -> first response, engine imported",
              "back_to_zero_s": "last response -> cold (idle_timeout 1 s)"}
    lines += [f"{labels[k]:<44}{v:>8.2f} s" for k, v in cold.items()]
    ray_labels = {"engine_s": "process start -> deployed (cluster, Serve, app)",
                  "first_response_s": "zero replicas -> first response",
                  "warm_response_s": "warm response", "back_to_zero_s": "last response -> zero replicas (idle 2 s)",
                  "second_response_s": "zero replicas -> first response, again"}
    for title, numbers in (("", ray_cold), (", scaling.standby: false", ray_cold_no_standby)):
        lines += ["", f"cold start, ray executor, same model, local Ray cluster{title}", "-" * 58]
        lines += [f"{ray_labels[k]:<44}{v:>8.2f} s" for k, v in numbers.items()]
    worst = max(ray_cold["first_response_s"], ray_cold["second_response_s"])
    verdict = "met" if worst <= 5 else "NOT met"
    lines += [f"ray zero -> first response <= 5 s: {verdict}", "",
              "warm throughput, echo: direct (local executor) vs through a gateway (remote, ray)",
              f"{'model':<14}{'route':<14}{'req/s':>10}{'p50 ms':>9}", "-" * 47]
    for model, cells in warm.items():
        for key, cell in cells.items():
            lines.append(f"{model:<14}{key:<14}{cell['rps']:>10.0f}{cell['p50_ms']:>9.2f}")
        for conns in LEVELS:
            ray_ratio = cells[f"ray c={conns}"]["rps"] / cells[f"direct c={conns}"]["rps"]
            lines.append(f"{model}: ray/direct at c={conns}: {ray_ratio:.3f}")
            ratio = cells[f"remote c={conns}"]["rps"] / cells[f"direct c={conns}"]["rps"]
            if model == "no-op":  # two HTTP exchanges per request on the cores the runner uses too
                lines.append(f"{model}: remote/direct at c={conns}: {ratio:.3f} (worst case, no target)")
                continue
            verdict = "met" if ratio >= 0.9 else "NOT met"
            lines.append(f"{model}: remote/direct at c={conns}: {ratio:.3f} (target >= 0.90: {verdict})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, medians reported (default 3)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("error: wrk is not installed; apt-get install -y wrk")
    with tempfile.TemporaryDirectory() as tmp:
        cold = cold_start(Path(tmp))
        ray_cold = ray_cold_start(Path(tmp))
        ray_cold_no_standby = ray_cold_start(Path(tmp), standby=False)
        warm = warm_throughput(Path(tmp), args.duration, args.rounds)
    if args.json:
        print(json.dumps({"cold": cold, "ray_cold": ray_cold, "ray_cold_no_standby": ray_cold_no_standby,
                          "warm": warm}, indent=2))
    else:
        print(report(cold, ray_cold, ray_cold_no_standby, warm))


if __name__ == "__main__":
    main()

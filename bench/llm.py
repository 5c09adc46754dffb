"""What the gateway adds in front of an LLM engine.

(a) Relay overhead. An *instant* backend (it yields tokens as fast as it is asked) is served
two ways, each by uvicorn in its own subprocess on 127.0.0.1:

* ``direct``: a bare Litestar route that calls the same ``LLMRunner.chat`` and streams its bytes;
* ``gateway``: warmgate's ``/v1/chat/completions`` with the same backend as a registered plugin.

Measured: requests/s at c=1 and c=64 (``wrk``, non-streaming, 16 tokens), time to first token
(p50 of sequential streaming requests) and tokens/s relayed by one long stream.

(b) With ``--vllm PYTHON`` (the interpreter of a venv with vLLM, see scripts/install-vllm): one
vLLM server (tiny model, ``--enforce-eager``) hit directly and through warmgate's vllm backend
relaying to it, at c=16 (``wrk``, non-streaming).

(c) Wire formats: the same function through ``/v1/chat/completions``, ``/v1/messages``
(Anthropic) and ``/api/chat`` (Ollama), non-streaming, 16 tokens, at c=1 and c=16 (``wrk``,
interleaved rounds): the p50 each adds over chat completions (target: within 0.1 ms).

(d) With ``--constrained``: the in-process transformers backend on the tiny demo model, free
decoding against JSON-schema constrained decoding (llguidance), tokens/s of the same budget in
interleaved rounds; and the grammar's compile time, first request and cached.

(e) With ``--tools``: tool-calling chat requests (two tools, non-streaming, c=1), and plain chat
for comparison, sent directly to an OpenAI-compatible engine that answers them with a tool call
(the fake engine of the tests, ``tests/plugins/llm/openai_upstream.py``, its own process) and
through warmgate's vllm relay to it, in interleaved rounds. Target: added p50 <= 0.5 ms. Also
printed: the gateway process's CPU per relayed request, which other work on shared cores moves
far less than a latency.

    python bench/llm.py [--duration 8] [--stream-tokens 20000] [--vllm .venv-vllm/bin/python] [--wires-only]
                       [--constrained[-only]] [--tools[-only]]
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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from processes import cpu_seconds, free_port, stop

from warmgate.core.hookspecs import hookimpl

__test__ = False

CHAT = {"model": "", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format('\\nRESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status))
end
"""


class InstantBackend:
    """Yields ``max_tokens`` one-word tokens at once: no model cost, only the relay is measured."""

    context_length = None

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> None:
        return None

    async def generate(self, params: Any) -> AsyncIterator[Any]:
        from warmgate.plugins.llm.backend import Delta, Usage

        for _ in range(params.max_tokens):
            yield Delta(text="tok ")
        yield Delta(finish_reason="length", usage=Usage(prompt_tokens=5, completion_tokens=params.max_tokens))

    async def close(self) -> None:
        """Nothing to release: no model was loaded."""


class InstantPlugin:
    @hookimpl
    def register_llm_backends(self, register: Any) -> None:
        register("instant", lambda model_id, options: InstantBackend())


def direct_app() -> Any:
    import msgspec
    from litestar import Litestar, Request, Response, get, post
    from litestar.response import Stream

    from warmgate.plugins.llm.openai_wire import ChatCompletionRequest
    from warmgate.plugins.llm.runner import LLMRunner

    runner = LLMRunner("instant", InstantBackend())
    decoder = msgspec.json.Decoder(ChatCompletionRequest)

    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Any:
        result = await runner.chat(decoder.decode(await request.body()))
        if hasattr(result, "__aiter__"):
            return Stream(result, media_type="text/event-stream")
        return Response(msgspec.json.encode(result), media_type="application/json")

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "OK"}

    @get("/v1/models", sync_to_thread=False)
    def models() -> dict[str, Any]:  # so the vllm backend can relay to this server too
        return {"object": "list", "data": [{"id": "instant", "object": "model"}]}

    return Litestar([chat, health, models], openapi_config=None, logging_config=None)


def gateway_app() -> Any:
    from warmgate import FunctionConfig, Settings, create_app
    from warmgate.core.plugins import pm
    from warmgate.core.settings import GatewaySettings

    pm.register(InstantPlugin(), name="bench-instant")
    settings = Settings(gateway=GatewaySettings(access_log=False), functions=[FunctionConfig(
        pipeline="llm", model_id="instant", warm=True, max_concurrency=256, max_queue=1024,
        options={"backend": "instant"})])
    return create_app(settings)


def serve(variant: str, port: int) -> None:
    import uvicorn

    app = direct_app() if variant == "direct" else gateway_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def start(command: list[str], base: str, timeout: float = 600, env: dict[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    """Run a server until its /health is 200 (and, for warmgate, not LOADING)."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    deadline = time.monotonic() + timeout
    while True:
        try:
            health = httpx.get(base + "/health", timeout=2)
            if health.status_code == 200 and b"LOADING" not in health.content:
                return proc
        except httpx.HTTPError:
            pass  # not listening yet
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"error: {' '.join(command)} did not become healthy")
        time.sleep(0.1)


def wrk(url: str, body: dict[str, Any], conns: int, seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % json.dumps(body))
    cmd = ["wrk", f"-t{min(conns, 2)}", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", f.name, url]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    Path(f.name).unlink()
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"error: wrk failed: {out}")
    raw = json.loads(line.removeprefix("RESULT "))
    if raw["errors"]:
        sys.exit(f"error: {raw['errors']} of {raw['requests']} requests to {url} failed; the numbers would mean nothing")
    return {"rps": raw["requests"] / (raw["duration_us"] / 1e6), "p50_ms": raw["p50_us"] / 1000,
            "errors": raw["errors"]}


def ttft_ms(base: str, n: int = 200) -> float:
    """p50 time from sending a streaming request to the first content chunk."""
    samples = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(n):
            started = time.perf_counter()
            with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
                for line in r.iter_lines():
                    if '"content":"tok ' in line:
                        samples.append((time.perf_counter() - started) * 1000)
                        break
    return statistics.median(samples)


def stream_tokens_per_second(base: str, tokens: int) -> float:
    with httpx.Client(base_url=base, timeout=300) as client:
        started = time.perf_counter()
        seen, carry, marker = 0, b"", b'"content":"tok '
        with client.stream("POST", "/v1/chat/completions", json={**CHAT, "max_tokens": tokens, "stream": True}) as r:
            for raw in r.iter_raw():
                data = carry + raw  # a marker may straddle two reads
                seen += data.count(marker)
                carry = data[-(len(marker) - 1):] if not data.endswith(marker) else b""
        elapsed = time.perf_counter() - started
    if seen != tokens:
        sys.exit(f"error: expected {tokens} tokens, saw {seen}")
    return tokens / elapsed


def relay(duration: int, stream_tokens: int) -> None:
    rows = {}
    for variant in ("direct", "gateway"):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start([sys.executable, __file__, "--serve", variant, "--port", str(port)], base)
        try:
            url = base + "/v1/chat/completions"
            wrk(url, CHAT, 1, 2)  # warm-up
            rows[variant] = {"c1": wrk(url, CHAT, 1, duration), "c64": wrk(url, CHAT, 64, duration),
                             "ttft": ttft_ms(base), "tok_s": stream_tokens_per_second(base, stream_tokens)}
        finally:
            stop(proc)
    print(f"{'server':<9}{'c=1 req/s':>11}{'c=1 p50':>9}{'c=64 req/s':>12}{'TTFT p50':>10}{'stream tok/s':>14}")
    for variant, r in rows.items():
        print(f"{variant:<9}{r['c1']['rps']:>11.0f}{r['c1']['p50_ms']:>8.3f}m{r['c64']['rps']:>12.0f}"
              f"{r['ttft']:>9.3f}m{r['tok_s']:>14.0f}")
    d, g = rows["direct"], rows["gateway"]
    print(f"\ngateway/direct req/s: c=1 {g['c1']['rps'] / d['c1']['rps']:.3f}, c=64 {g['c64']['rps'] / d['c64']['rps']:.3f}")
    print(f"added p50 at c=1: {g['c1']['p50_ms'] - d['c1']['p50_ms']:+.3f} ms; TTFT added: {g['ttft'] - d['ttft']:+.3f} ms")
    print(f"gateway SSE relay: {g['tok_s']:.0f} tokens/s in one stream (target >= 50,000)")


WIRES = {
    "/v1/chat/completions": CHAT,
    "/v1/messages": {"model": "", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16},
    "/api/chat": {"model": "instant", "messages": [{"role": "user", "content": "hello"}], "stream": False,
                  "options": {"num_predict": 16}},
}
"""The same generation in each wire format the LLM functions speak."""


def wires(duration: int, rounds: int) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start([sys.executable, __file__, "--serve", "gateway", "--port", str(port)], base)
    runs: dict[tuple[str, int], list[float]] = {}
    try:
        for path, body in WIRES.items():
            wrk(base + path, body, 1, 1)  # warm-up, and a failing route stops the bench here
        for _ in range(rounds):  # interleaved, so drift hits every route alike
            for conns in (1, 16):
                for path, body in WIRES.items():
                    runs.setdefault((path, conns), []).append(wrk(base + path, body, conns, duration)["p50_ms"])
    finally:
        stop(proc)
    p50 = {key: statistics.median(samples) for key, samples in runs.items()}
    print(f"\n{'route (gateway, instant backend)':<34}{'c=1 p50':>10}{'added':>9}{'c=16 p50':>10}{'added':>9}"
          f"   (median of {rounds} rounds of {duration} s)")
    for path in WIRES:
        cells = "".join(f"{p50[path, c]:>9.3f}m{p50[path, c] - p50['/v1/chat/completions', c]:>+8.3f}m"
                        for c in (1, 16))
        print(f"{path:<34}{cells}")
    print("target: /v1/messages and /api/chat within 0.1 ms of /v1/chat/completions")


def vllm(duration: int, python: str, rounds: int) -> None:
    from warmgate.plugins.llm.demo import build_tiny_chat_model

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "tiny-chat"
        build_tiny_chat_model(model)
        engine_port, gateway_port = free_port(), free_port()
        engine = start([python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                        "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(engine_port),
                        "--enforce-eager", "--max-model-len", "512"], f"http://127.0.0.1:{engine_port}",
                       env={"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_HOST_IP": "127.0.0.1",
                            "VLLM_NO_USAGE_STATS": "1"})
        config = Path(tmp) / "serverless.yaml"
        config.write_text(json.dumps({"gateway": {"access_log": False}, "functions": [{
            "pipeline": "llm", "model_id": "tiny", "warm": True, "max_concurrency": 64, "max_queue": 256,
            "options": {"backend": "vllm", "url": f"http://127.0.0.1:{engine_port}"}}]}))
        gateway = start([sys.executable, "-m", "warmgate", "serve", "--config", str(config), "--port",
                         str(gateway_port)], f"http://127.0.0.1:{gateway_port}")
        body = {**CHAT, "model": "tiny"}
        runs: dict[str, list[dict[str, float]]] = {"direct": [], "warmgate": []}
        try:
            wrk(f"http://127.0.0.1:{gateway_port}/v1/chat/completions", body, 16, 2)  # warm-up
            for _ in range(rounds):  # interleaved, so drift in the engine's speed hits both alike
                runs["direct"].append(wrk(f"http://127.0.0.1:{engine_port}/v1/chat/completions", body, 16, duration))
                runs["warmgate"].append(wrk(f"http://127.0.0.1:{gateway_port}/v1/chat/completions", body, 16, duration))
        finally:
            stop(gateway)
            stop(engine)
    print(f"{'vLLM c=16':<10}{'req/s':>8}{'p50 ms':>9}   (median of {rounds} interleaved rounds of {duration} s)")
    medians = {}
    for name, samples in runs.items():
        medians[name] = {k: statistics.median(s[k] for s in samples) for k in ("rps", "p50_ms")}
        print(f"{name:<10}{medians[name]['rps']:>8.1f}{medians[name]['p50_ms']:>9.2f}")
    direct, relayed = medians["direct"], medians["warmgate"]
    print(f"ratio {relayed['rps'] / direct['rps']:.3f} (target >= 0.97), "
          f"added p50 {relayed['p50_ms'] - direct['p50_ms']:+.2f} ms (target <= 1 ms)")


FORECAST = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                             "unit": {"enum": ["C", "F"]},
                                             "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["city", "days", "unit"], "additionalProperties": False}


def constrained(rounds: int, max_tokens: int = 200) -> None:
    import asyncio

    import torch

    from warmgate.plugins.llm.backend import GenerationParams
    from warmgate.plugins.llm.demo import build_tiny_chat_model
    from warmgate.plugins.llm.transformers_backend import load_transformers

    torch.set_num_threads(1)

    async def tokens_per_second(backend: Any, seed: int, **fields: Any) -> float:
        params = GenerationParams(messages=[{"role": "user", "content": "three days in Paris"}],
                                  max_tokens=max_tokens, temperature=1.0, seed=seed, **fields)
        began = time.perf_counter()
        async for delta in backend.generate(params):
            if delta.usage is not None:
                return delta.usage.completion_tokens / (time.perf_counter() - began)
        raise RuntimeError("no usage")

    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_chat_model(Path(tmp))
        backend = load_transformers(tmp, {"device": "cpu"})
    schema = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": FORECAST}}
    began = time.perf_counter()
    backend._sampler(GenerationParams(messages=[], max_tokens=max_tokens, response_format=schema),
                     ("response", FORECAST, "schema"))
    first_ms = (time.perf_counter() - began) * 1000  # the tokenizer's llguidance view and the compile
    other = {**FORECAST, "properties": {**FORECAST["properties"], "note": {"type": "string"}}}
    began = time.perf_counter()
    backend._grammars.matcher(other, "schema")
    compile_ms = (time.perf_counter() - began) * 1000
    began = time.perf_counter()
    for _ in range(100):
        backend._grammars.matcher(other, "schema")
    cached_ms = (time.perf_counter() - began) * 10
    runs: dict[str, list[float]] = {"free": [], "json_schema": []}
    asyncio.run(tokens_per_second(backend, 0))  # warm-up
    for seed in range(rounds):  # interleaved, so drift hits both alike
        runs["free"].append(asyncio.run(tokens_per_second(backend, seed)))
        runs["json_schema"].append(asyncio.run(tokens_per_second(backend, seed, response_format=schema)))
    free, json_tps = (statistics.median(runs[k]) for k in ("free", "json_schema"))
    print(f"\n{'transformers (tiny)':<22}{'tokens/s':>10}   (median of {rounds} rounds, {max_tokens} tokens)")
    print(f"{'free decoding':<22}{free:>10.0f}\n{'json_schema':<22}{json_tps:>10.0f}")
    print(f"constrained/free {json_tps / free:.3f} (target >= 0.8)")
    print(f"grammar: first request {first_ms:.2f} ms (tokenizer + compile), a new schema {compile_ms:.2f} ms, "
          f"cached {cached_ms:.3f} ms")


TOOLS = [{"type": "function", "function": {"name": name, "description": f"The {name} of a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}}, "required": ["city"]}}}
    for name in ("weather", "time")]


def tool_calls(duration: int, rounds: int) -> None:
    """Direct to the fake engine against through the relay, tool-calling requests at c=1."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.plugins.llm.openai_upstream import run_upstream

    bodies = {"plain": {**CHAT, "model": "org/tools"}, "tools": {**CHAT, "model": "org/tools", "tools": TOOLS}}
    with run_upstream("org/tools") as upstream, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "serverless.yaml"
        config.write_text(json.dumps({"gateway": {"access_log": False}, "functions": [{
            "pipeline": "llm", "model_id": "org/tools", "warm": True,
            "options": {"backend": "vllm", "url": upstream.url}}]}))
        port = free_port()
        gateway = start([sys.executable, "-m", "warmgate", "serve", "--config", str(config), "--port", str(port)],
                        f"http://127.0.0.1:{port}")
        urls = {"direct": upstream.url + "/v1/chat/completions",
                "warmgate": f"http://127.0.0.1:{port}/v1/chat/completions"}
        answer = httpx.post(urls["warmgate"], json=bodies["tools"], timeout=30).json()
        if answer["choices"][0]["finish_reason"] != "tool_calls":
            sys.exit(f"error: the relay answered no tool call: {answer}")
        runs: dict[tuple[str, str], list[dict[str, float]]] = {(b, u): [] for b in bodies for u in urls}
        try:
            wrk(urls["warmgate"], bodies["tools"], 1, 2)  # warm-up
            for _ in range(rounds):  # interleaved, so drift on a shared machine hits every row alike
                for kind, url in runs:
                    used = cpu_seconds(gateway.pid)
                    run = wrk(urls[url], bodies[kind], 1, duration)
                    # the gateway's CPU per request: robust where other work on the cores moves the p50
                    run["cpu_ms"] = (cpu_seconds(gateway.pid) - used) * 1000 / (run["rps"] * duration)
                    runs[kind, url].append(run)
        finally:
            stop(gateway)
    print(f"{'c=1':<16}{'req/s':>8}{'p50 ms':>9}{'gateway CPU ms/req':>20}   (median of {rounds} interleaved rounds "
          f"of {duration} s)")
    medians = {}
    for (kind, url), samples in runs.items():
        medians[kind, url] = {k: statistics.median(s[k] for s in samples) for k in ("rps", "p50_ms", "cpu_ms")}
        cpu = f"{medians[kind, url]['cpu_ms']:.3f}" if url == "warmgate" else "-"
        print(f"{kind + ' ' + url:<16}{medians[kind, url]['rps']:>8.1f}{medians[kind, url]['p50_ms']:>9.3f}{cpu:>20}")
    for kind in bodies:
        added = medians[kind, "warmgate"]["p50_ms"] - medians[kind, "direct"]["p50_ms"]
        print(f"{kind}: added p50 {added:+.3f} ms" + (" (target <= 0.5 ms)" if kind == "tools" else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--stream-tokens", type=int, default=20000)
    parser.add_argument("--vllm", metavar="PYTHON", help="also measure vLLM managed mode with this interpreter")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds for the vLLM comparison")
    parser.add_argument("--vllm-only", action="store_true", help="skip (a) and (c), run only the vLLM comparison")
    parser.add_argument("--wires-only", action="store_true", help="run only the wire-format comparison (c)")
    parser.add_argument("--constrained", action="store_true", help="also measure constrained decoding (d)")
    parser.add_argument("--constrained-only", action="store_true", help="run only (d)")
    parser.add_argument("--tools", action="store_true", help="also measure tool-calling requests through the relay (e)")
    parser.add_argument("--tools-only", action="store_true", help="run only (e)")
    parser.add_argument("--serve", choices=["direct", "gateway"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if args.constrained_only:
        constrained(args.rounds)
        return
    if shutil.which("wrk") is None:
        sys.exit("error: wrk is not installed; install it with `apt-get update && apt-get install -y wrk`")
    if not (args.vllm_only or args.wires_only or args.tools_only):
        relay(args.duration, args.stream_tokens)
    if not (args.vllm_only or args.tools_only):
        wires(args.duration, args.rounds)
    if args.vllm and not args.wires_only:
        vllm(args.duration, args.vllm, args.rounds)
    if args.constrained and not args.wires_only:
        constrained(args.rounds)
    if args.tools or args.tools_only:
        tool_calls(args.duration, args.rounds)


if __name__ == "__main__":
    main()

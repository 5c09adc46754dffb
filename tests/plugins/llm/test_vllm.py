"""The vllm backend's relay (external mode) and child-process management (managed mode),
against a real OpenAI-compatible server: another warmgate serving the tiny chat model."""

import contextlib
import sys
import time
from pathlib import Path

import openai
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.plugins import get_pipelines
from warmgate.core.settings import Scaling
from warmgate.plugins.llm.vllm_backend import engine_flags


@pytest.fixture(scope="session")
def tiny_chat(tiny_model_dir):
    return str(tiny_model_dir(get_pipelines()["llm"]))


@pytest.fixture
def upstream(warmgate_server, tiny_chat):
    """The engine: an OpenAI-compatible server on 127.0.0.1."""
    server, _ = warmgate_server(Settings(functions=[FunctionConfig(pipeline="llm", model_id=tiny_chat)]))
    return server.url


def test_external_mode_relays_chat_and_streams_with_usage(warmgate_server, upstream, tiny_chat):
    config = FunctionConfig(pipeline="llm", model_id=tiny_chat, options={"backend": "vllm", "url": upstream + "/v1"})
    server, client = warmgate_server(Settings(functions=[config]))
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused") as sdk:
        completion = sdk.chat.completions.create(model="", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
        assert completion.usage.completion_tokens <= 5 and completion.usage.prompt_tokens > 0
        chunks = list(sdk.chat.completions.create(model="", messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=4, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens <= 4
    r = client.post("/llm", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 3


def test_external_mode_relays_the_engines_client_errors(warmgate_server, upstream, tiny_chat):
    config = FunctionConfig(pipeline="llm", model_id=tiny_chat, options={"backend": "vllm", "url": upstream})
    _, client = warmgate_server(Settings(functions=[config]))
    r = client.post("/llm", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000})
    assert r.status_code == 400
    assert "the engine answered 422" in r.json()["detail"]["msg"] and "context" in r.json()["detail"]["msg"]


def test_external_mode_refuses_a_model_the_engine_does_not_serve(warmgate_server, upstream):
    config = FunctionConfig(pipeline="llm", model_id="org/other", options={"backend": "vllm", "url": upstream})
    _, client = warmgate_server(Settings(functions=[config]))
    r = client.post("/llm", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503 and "does not serve 'org/other'" in r.json()["detail"]["msg"]


def test_engine_flags_follow_vllm_spelling():
    assert engine_flags({"max_model_len": 4096, "enforce_eager": True, "quantization": None, "x": False}) == [
        "--max-model-len", "4096", "--enforce-eager"]


def test_the_managed_engine_parses_tool_calls_when_a_tool_parser_is_set():
    from warmgate.plugins.llm.vllm_backend import ManagedEngine

    command = ManagedEngine("org/m", "org/m", {"tool_parser": "hermes"}).command
    assert command[-3:] == ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    assert "--enable-auto-tool-choice" not in ManagedEngine("org/m", "org/m", {}).command


def _engine_pids(marker):
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):  # the process may have exited meanwhile
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
    return pids


def test_managed_mode_starts_the_engine_on_demand_and_stops_it_when_idle(warmgate_server, tiny_chat, tmp_path):
    engine_config = tmp_path / "engine.yaml"
    engine_config.write_text(f"functions:\n  - pipeline: llm\n    model_id: {tiny_chat}\n")
    command = ["{python}", "-m", "warmgate", "serve", "--port", "{port}", "--config", str(engine_config)]
    config = FunctionConfig(pipeline="llm", model_id=tiny_chat, scaling=Scaling(idle_timeout=1.0),
                            options={"backend": "vllm", "command": command, "python": sys.executable,
                                     "env": {"WARMGATE_LOAD_PLUGINS": "warmgate.plugins.llm"}})
    _, client = warmgate_server(Settings(functions=[config]))
    assert _engine_pids(str(engine_config)) == []  # cold: no engine yet
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    assert client.post("/llm", json=body).status_code == 200
    [pid] = _engine_pids(str(engine_config))
    assert client.post("/llm", json={**body, "stream": True}).text.endswith("data: [DONE]\n\n")
    deadline = time.monotonic() + 60
    # idle_timeout passed: the function scaled to zero and the engine process is gone
    while client.get("/functions").json()["functions"][0]["state"] != "cold" or _engine_pids(str(engine_config)):
        assert time.monotonic() < deadline, "the engine was not stopped"
        time.sleep(0.1)
    assert client.post("/llm", json=body).status_code == 200  # started again on demand
    [again] = _engine_pids(str(engine_config))
    assert again != pid and client.get("/functions").json()["functions"][0]["loads"] == 2


def test_managed_engine_that_dies_at_start_fails_the_load_with_its_output(warmgate_server):
    command = ["{python}", "-c", "import sys; print('CUDA out of memory'); sys.exit(3)"]
    config = FunctionConfig(pipeline="llm", model_id="org/m", options={"backend": "vllm", "command": command})
    _, client = warmgate_server(Settings(functions=[config]))
    r = client.post("/llm", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503
    msg = r.json()["detail"]["msg"]
    assert "exited with code 3" in msg and "CUDA out of memory" in msg

"""Local scale to zero in a real `warmgate serve` process: an LLM function with 200 MB of weights
is loaded by its first request, unloaded after `idle_timeout` with its memory given back to the
system (the process's RSS, read from /proc), and loaded again by the next request."""

import json
import os
import shutil
import subprocess
import sys

import httpx
import pytest

from warmgate.core.plugins import get_pipelines
from warmgate.testing import wait_for
from warmgate.testing.process import free_port

WEIGHT_BYTES = 200 * 2**20


@pytest.fixture(scope="module")
def heavy_chat_model(tiny_model_dir, tmp_path_factory):
    """The tiny chat model's tokenizer on a wider Llama: about 200 MB of float32 weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tiny = tiny_model_dir(get_pipelines()["llm"])
    directory = tmp_path_factory.mktemp("heavy-chat")
    for name in os.listdir(tiny):
        if name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(tiny / name, directory / name)
    base = LlamaConfig.from_pretrained(tiny)
    config = LlamaConfig(**{**base.to_dict(), "intermediate_size": 8192, "hidden_size": 512,
                            "num_attention_heads": 16, "num_key_value_heads": 4, "num_hidden_layers": 4})
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def rss(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def test_an_idle_function_gives_its_memory_back_and_loads_again(heavy_chat_model, tmp_path):
    config = tmp_path / "serverless.yaml"
    config.write_text(json.dumps({
        "gateway": {"access_log": False},
        "pricing": {"ledger": "off"},
        "functions": [{"pipeline": "llm", "model_id": str(heavy_chat_model), "scaling": {"idle_timeout": 2}}],
    }))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "warmgate", "serve", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

    def state():
        try:
            listed = httpx.get(f"{url}/functions", timeout=2).json()["functions"]
        except httpx.HTTPError:
            return None
        [fn] = [f for f in listed if f["pipeline"] == "llm"]
        return fn["state"], fn["loads"]

    try:
        assert wait_for(lambda: state() is not None, timeout=30)
        assert httpx.post(f"{url}/llm", json=body, timeout=120).status_code == 200
        loaded = rss(proc.pid)
        assert wait_for(lambda: state() == ("cold", 1), timeout=30)
        unloaded = rss(proc.pid)
        assert loaded - unloaded > 0.7 * WEIGHT_BYTES, (loaded, unloaded)  # the weights went back to the system
        assert httpx.post(f"{url}/llm", json=body, timeout=120).status_code == 200
        assert state()[1] == 2  # the next request loaded it again
        assert rss(proc.pid) - unloaded > 0.7 * WEIGHT_BYTES
    finally:
        proc.terminate()
        proc.wait(timeout=30)

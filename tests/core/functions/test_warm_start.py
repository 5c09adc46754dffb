"""``warmgate serve`` in a fresh process with warm functions of every plugin: they load at
startup from concurrent tasks, where the lazy imports of transformers and diffusers would race
(ImportError: cannot import name ...) if two loads ran in threads at once."""

import json
import os
import socket
import subprocess
import sys

import httpx

from warmgate.core.plugins import get_pipelines
from warmgate.testing import wait_for

WARM = ("text-to-image", "image-to-image", "upscale", "text-to-speech", "image-to-text", "llm", "embeddings")


def test_warm_functions_all_load_at_startup_in_a_fresh_process(tiny_model_dir, tmp_path):
    pipelines = get_pipelines()
    functions = [{"pipeline": name, "model_id": str(tiny_model_dir(pipelines[name])), "warm": True} for name in WARM]
    config = tmp_path / "serverless.yaml"
    config.write_text(json.dumps({"functions": functions}))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "warmgate", "serve", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    states = {}

    def loaded():
        try:
            listed = httpx.get(f"http://127.0.0.1:{port}/functions", timeout=2).json()["functions"]
        except httpx.HTTPError:
            return False
        states.update({f["pipeline"]: (f["state"], f["last_error"]) for f in listed if f["pipeline"] in WARM})
        return len(states) == len(WARM) and all(state in ("idle", "error") for state, _ in states.values())

    try:
        assert wait_for(loaded, timeout=90), states
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert states == {name: ("idle", None) for name in WARM}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""JSON logs are JSON all the way: ``warmgate serve --profile demo`` in a process of its own, a
cold start that builds a demo model and a Whisper request on which transformers warns; every
line the process writes to stderr parses as JSON."""

import io
import json
import os
import signal
import subprocess
import sys
import wave

import httpx

from warmgate.testing import wait_for
from warmgate.testing.process import free_port


def _wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x01" * int(seconds * rate))
    return buffer.getvalue()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_every_stderr_line_of_a_serving_process_is_json(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "WARMGATE_LOG_FORMAT": "json", "WARMGATE_CACHE_DIR": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:  # a file, not a pipe: a full pipe would stall the server
        process = subprocess.Popen([sys.executable, "-m", "warmgate", "serve", "--profile", "demo", "--port", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=tmp_path)
    try:
        assert wait_for(lambda: process.poll() is not None or _healthy(url), timeout=60) and process.poll() is None
        r = httpx.post(f"{url}/audio-to-text", files={"audio": ("a.wav", _wav(), "audio/wav")}, timeout=300)
        assert r.status_code == 200, r.text
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    lines = log.read_text().splitlines()
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    assert not_json == []
    events = [json.loads(line) for line in lines]
    assert any(e["event"] == "demo_model_built" for e in events)
    [warning, *_] = [e for e in events if e.get("logger", "").startswith("transformers") and "max_new_tokens" in e["event"]]
    assert warning["level"] == "warning" and warning["request_id"]  # the request that caused it

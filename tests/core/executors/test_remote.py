"""The remote executor: a second warmgate process is the runner; the gateway validates and prices
requests, forwards JSON, multipart and SSE bodies intact, maps the runner's failures, and serves
again when a runner that went down comes back."""

import json

import httpx
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import Price
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import EchoPipeline, upload_pipeline, wait_for
from warmgate.testing.process import free_port, gateway_process


@pytest.fixture
def runner_config(tmp_path):
    """The runner: echo and upload on their own models, needing the token ``runner-secret``."""
    path = tmp_path / "runner.yaml"
    path.write_text(json.dumps({
        "gateway": {"access_log": False},
        "auth": {"api_keys": ["runner-secret"]},
        "pricing": {"ledger": "off"},
        "functions": [{"pipeline": "echo", "model_id": "echo-1", "max_concurrency": 4},
                      {"pipeline": "upload", "model_id": "upload-1"}],
    }))
    return path


@pytest.fixture
def remote(runner_config, warmgate_server):
    """``remote(token=...)``: (runner process, gateway client); the gateway's functions forward."""
    port = free_port()
    runners = []

    def start(token="runner-secret", **options):
        runner = runners[0] if runners else None
        if runner is None:
            cm = gateway_process(runner_config, port=port)
            runner = cm.__enter__()
            runners.append(runner)
            stops.append(cm)
        url = f"http://127.0.0.1:{port}"
        functions = [
            FunctionConfig(pipeline="echo", model_id="echo-1", executor="remote", url=url, token=token,
                           max_concurrency=4, price=Price(price_per_unit=2), options=options),
            FunctionConfig(pipeline="upload", model_id="upload-1", executor="remote", url=url, token=token),
        ]
        settings = Settings(functions=functions, sections=[PricingSettings(ledger="off")])
        _, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec, "upload": upload_pipeline()})
        return runner, client

    stops = []
    start.port = port
    start.config = runner_config
    yield start
    for cm in stops:
        cm.__exit__(None, None, None)


def test_json_is_forwarded_and_priced_here(remote):
    runner, client = remote()
    r = client.post("/echo?trace=1", json={"prompt": "hey", "model_id": "echo-1", "repeat": 2})
    assert r.status_code == 200, r.text
    assert r.json() == {"text": "hey hey", "model_id": "echo-1"}
    assert (r.headers["x-warmgate-units"], r.headers["x-warmgate-price"]) == ("3", "6")
    assert float(r.headers["x-warmgate-overhead-ms"]) >= 0
    [fn] = [f for f in client.get("/functions").json()["functions"] if f["pipeline"] == "echo"]
    assert fn["executor"] == "remote" and fn["remote"] == {"url": runner.url, "status": "IDLE", "error": None}


def test_server_sent_events_come_through_as_the_runner_sent_them(remote):
    runner, client = remote()
    body = {"prompt": "one two three", "model_id": "echo-1", "stream": True}
    direct = httpx.post(f"{runner.url}/echo", json=body, headers={"Authorization": "Bearer runner-secret"})
    with client.stream("POST", "/echo", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        streamed = b"".join(r.iter_raw())
    assert streamed == direct.content and streamed.endswith(b"data: [DONE]\n\n")


def test_multipart_files_are_forwarded_intact(remote):
    _, client = remote()
    payload = bytes(range(256)) * 40
    r = client.post("/upload", files={"image": ("pic.png", payload, "image/png")},
                    data={"prompt": "describe", "seed": "7", "model_id": "upload-1"})
    assert r.status_code == 200, r.text
    assert r.json() == {"filename": "pic.png", "content_type": "image/png", "size": len(payload),
                        "prompt": "describe", "seed": 7, "strength": 0.5}


def test_bad_input_is_refused_here_without_a_round_trip(remote):
    _, client = remote()
    r = client.post("/echo", json={"prompt": "", "model_id": "echo-1"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "prompt"]


def test_runner_failures_are_502s_naming_the_runner(remote):
    runner, client = remote()
    failed = client.post("/echo", json={"prompt": "x", "model_id": "echo-1", "fail": True})
    assert failed.status_code == 502
    msg = failed.json()["detail"]["msg"]
    assert runner.url in msg and "echo was asked to fail" in msg


def test_a_wrong_token_is_the_operators_problem_not_the_callers(remote):
    _, client = remote(token="stale")
    r = client.post("/echo", json={"prompt": "x", "model_id": "echo-1"})
    assert r.status_code == 502 and "refused the function's token (401)" in r.json()["detail"]["msg"]


def test_runner_down_is_503_with_the_reason_and_back_up_is_served(remote):
    runner, client = remote(health_interval=0.2)
    assert client.post("/echo", json={"prompt": "a", "model_id": "echo-1"}).status_code == 200
    runner.kill()
    down = client.post("/echo", json={"prompt": "a", "model_id": "echo-1"})
    assert down.status_code == 503 and "unreachable" in down.json()["detail"]["msg"]
    assert "retry-after" in down.headers

    def remote_status():
        [fn] = [f for f in client.get("/functions").json()["functions"] if f["pipeline"] == "echo"]
        return fn["remote"]["status"]

    assert wait_for(lambda: remote_status() == "UNREACHABLE", timeout=5)
    with gateway_process(remote.config, port=remote.port):
        r = client.post("/echo", json={"prompt": "back", "model_id": "echo-1"})
        assert r.status_code == 200 and r.json()["text"] == "back"
        assert wait_for(lambda: remote_status() in ("OK", "IDLE"), timeout=5)


def test_a_runner_that_is_down_at_first_use_fails_the_load_with_the_reason(warmgate_server):
    url = f"http://127.0.0.1:{free_port()}"
    config = FunctionConfig(pipeline="echo", model_id="echo-1", executor="remote", url=url)
    _, client = warmgate_server(Settings(functions=[config]), pipelines={"echo": EchoPipeline().spec})
    r = client.post("/echo", json={"prompt": "x"})
    assert r.status_code == 503 and f"remote runner {url} is unreachable" in r.json()["detail"]["msg"]

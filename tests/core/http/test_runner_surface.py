"""Health, version, hardware, functions and Prometheus metrics, as the Livepeer runner has them."""

from warmgate import FunctionConfig, Settings
from warmgate.testing import EchoPipeline


def _server(warmgate_server, **config):
    echo = EchoPipeline()
    settings = Settings(functions=[FunctionConfig(pipeline="echo", model_id="org/m", **config)])
    return warmgate_server(settings, pipelines={"echo": echo.spec})[1]


def test_health_is_idle_before_and_after_work(warmgate_server):
    client = _server(warmgate_server)
    assert client.get("/health").json() == {"status": "IDLE"}
    client.post("/echo", json={"prompt": "x"})
    assert client.get("/health/").json() == {"status": "IDLE"}


def test_version_and_hardware_in_the_spec_shapes(warmgate_server):
    client = _server(warmgate_server)
    version = client.get("/version").json()
    assert version["pipeline"] == "echo" and version["model_id"] == "org/m" and version["version"]
    info = client.get("/hardware/info").json()
    assert info == {"pipeline": "echo", "model_id": "org/m", "gpu_info": {}}  # no GPU on this machine
    stats = client.get("/hardware/stats").json()
    assert stats == {"pipeline": "echo", "model_id": "org/m", "gpu_stats": {}}


def test_functions_lists_state_and_counters(warmgate_server):
    client = _server(warmgate_server, max_concurrency=3)
    [fn] = client.get("/functions").json()["functions"]
    assert fn["state"] == "cold" and fn["loads"] == 0 and fn["max_concurrency"] == 3
    client.post("/echo", json={"prompt": "x"})
    [fn] = client.get("/functions").json()["functions"]
    assert fn["state"] == "idle" and fn["loads"] == 1 and fn["requests"] == 1
    assert fn["load_seconds"] >= 0 and fn["last_used_at"] > 0


def test_index_lists_pipelines(warmgate_server):
    client = _server(warmgate_server)
    index = client.get("/").json()
    assert index["pipelines"] == {"echo": ["/echo"]} and index["openapi"] == "/openapi.json"


def _sample(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[len(name) + 1:line.index("}")].split(",")))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_cover_requests_states_cold_starts_loads_and_queues(warmgate_server):
    client = _server(warmgate_server)
    client.post("/echo", json={"prompt": "x"})
    client.post("/echo", json={"prompt": ""})
    client.get("/nowhere")
    text = client.get("/metrics").text
    assert _sample(text, "warmgate_requests_total", route="/echo", method="POST", status="200") == 1
    assert _sample(text, "warmgate_requests_total", route="/echo", method="POST", status="422") == 1
    assert _sample(text, "warmgate_requests_total", route="<unmatched>", method="GET", status="404") == 1
    assert _sample(text, "warmgate_request_duration_seconds_count", route="/echo", method="POST", status="200") == 1
    assert _sample(text, "warmgate_function_state", function="echo:org/m", warmgate_function_state="idle") == 1
    assert _sample(text, "warmgate_function_state", function="echo:org/m", warmgate_function_state="cold") == 0
    assert _sample(text, "warmgate_cold_starts_total", function="echo:org/m") == 1
    assert _sample(text, "warmgate_load_seconds_count", function="echo:org/m") == 1
    assert _sample(text, "warmgate_queue_depth", function="echo:org/m") == 0

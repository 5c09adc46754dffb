"""OpenTelemetry traces over the real OTLP/HTTP wire: ``OTLPReceiver`` decodes what the gateway
exports with opentelemetry-proto, as a collector would, and the tests read the spans it got."""

import json
import os
import subprocess
import sys
import threading

import pytest

from warmgate import FunctionConfig, PipelineSpec, Settings
from warmgate.core.config import load_settings
from warmgate.core.http.app import create_app
from warmgate.core.http.errors import ConfigError
from warmgate.core.settings import AuthSettings, GatewaySettings, Price
from warmgate.core.tracing.settings import TracingSettings
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import EchoPipeline, EchoRequest, EchoResponse, MockRunner, mock_pipeline, wait_for
from warmgate.testing.otlp import OTLPReceiver, ReceivedSpan
from warmgate.testing.process import free_port, gateway_process

SERVER, CLIENT = 2, 3
ERROR = 2


@pytest.fixture
def receiver():
    with OTLPReceiver() as running:
        yield running


def tracing(receiver: OTLPReceiver, service: str, **fields) -> TracingSettings:
    return TracingSettings(endpoint=receiver.endpoint, service_name=service, **fields)


def server_span(spans: list[ReceivedSpan], service: str, path: str) -> ReceivedSpan | None:
    return next((s for s in spans if s.service == service and s.kind == SERVER and s.attributes["url.path"] == path),
                None)


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans if s.parent_id == parent.span_id and s.trace_id == parent.trace_id}


def test_a_request_through_a_gateway_and_a_remote_warmgate_is_one_trace(receiver, tmp_path, warmgate_server):
    config = tmp_path / "runner.yaml"
    config.write_text(json.dumps({
        "gateway": {"access_log": False}, "pricing": {"ledger": "off"},
        "tracing": {"endpoint": receiver.endpoint, "service_name": "runner"},
        "functions": [{"pipeline": "echo", "model_id": "echo-1"}]}))
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with gateway_process(config) as runner:
        settings = Settings(functions=[FunctionConfig(pipeline="echo", model_id="echo-1", executor="remote",
                                                      url=runner.url)],
                            sections=[tracing(receiver, "gateway")])
        _, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})
        r = client.post("/echo", json={"prompt": "hey", "model_id": "echo-1"},
                        headers={"traceparent": f"00-{caller_trace}-{caller_span}-01", "tracestate": "vendor=1"})
        assert r.status_code == 200, r.text
        spans = receiver.wait_for(lambda got: server_span(got, "gateway", "/echo") is not None
                                  and server_span(got, "runner", "/echo") is not None
                                  and len({s.service for s in got if s.trace_id == caller_trace}) == 2)
    gateway = server_span(spans, "gateway", "/echo")
    assert (gateway.trace_id, gateway.parent_id) == (caller_trace, caller_span)  # the caller's trace, continued
    assert gateway.name == "POST /echo" and gateway.attributes["http.route"] == "/echo"
    assert gateway.attributes["http.response.status_code"] == 200
    execute = children(spans, gateway)["execute remote"]
    [attempt] = [s for s in spans if s.parent_id == execute.span_id]
    assert attempt.kind == CLIENT and attempt.attributes["url.full"] == f"{runner.url}/echo"
    upstream = server_span(spans, "runner", "/echo")
    assert (upstream.trace_id, upstream.parent_id) == (caller_trace, attempt.span_id)  # the runner continued it
    assert "execute local" in children(spans, upstream)
    assert {s.service for s in spans if s.trace_id == caller_trace} == {"gateway", "runner"}


def _slow_spec(release: threading.Event) -> PipelineSpec:
    def load(model_id, options):
        if not release.wait(30):
            raise TimeoutError("the test never released the load")
        return MockRunner(EchoResponse(text="ok", model_id=model_id))

    return PipelineSpec(name="slow", request=EchoRequest, response=EchoResponse, load=load, default_model_id="m")


def test_a_cold_load_is_its_own_span_linked_from_both_first_requests(receiver, warmgate_server):
    release = threading.Event()
    settings = Settings(functions=[FunctionConfig(pipeline="slow", model_id="m", max_concurrency=2)],
                        sections=[tracing(receiver, "gateway")])
    server, client = warmgate_server(settings, pipelines={"slow": _slow_spec(release)})
    fn = server.app.state.functions.functions["slow:m"]
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(client.post("/slow", json={"prompt": "x"})))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: fn.in_flight == 2)  # both wait for the one load
    release.set()
    for thread in threads:
        thread.join(30)
    assert [a.status_code for a in answers] == [200, 200]
    spans = receiver.wait_for(lambda got: sum(s.name == "queue wait" for s in got) == 2
                              and any(s.name == "load slow:m" for s in got))
    [load] = [s for s in spans if s.name == "load slow:m"]
    waits = [s for s in spans if s.name == "queue wait"]
    assert load.parent_id == "" and load.trace_id not in {w.trace_id for w in waits}  # a trace of its own
    assert len({w.trace_id for w in waits}) == 2
    assert all(w.links == [(load.trace_id, load.span_id)] for w in waits)
    assert load.attributes["warmgate.function"] == "slow:m" and load.status_code != ERROR


def test_a_failed_load_fails_its_span_and_the_wait_linked_to_it(receiver, warmgate_server):
    def load(model_id, options):
        raise OSError("no such weights")

    spec = PipelineSpec(name="broken", request=EchoRequest, response=EchoResponse, load=load, default_model_id="m")
    settings = Settings(functions=[FunctionConfig(pipeline="broken", model_id="m")], sections=[tracing(receiver, "gw")])
    _, client = warmgate_server(settings, pipelines={"broken": spec})
    assert client.post("/broken", json={"prompt": "x"}).status_code == 503  # LoadError
    spans = receiver.wait_for(lambda got: any(s.name == "load broken:m" for s in got)
                              and any(s.name == "queue wait" for s in got))
    [load] = [s for s in spans if s.name == "load broken:m"]
    [wait] = [s for s in spans if s.name == "queue wait"]
    assert load.status_code == ERROR and "no such weights" in load.status_message
    assert wait.links == [(load.trace_id, load.span_id)]
    assert wait.status_code == ERROR and "no such weights" in wait.status_message


def test_a_priced_request_shows_its_quote_and_its_ledger_write(receiver, warmgate_server, tmp_path):
    settings = Settings(functions=[FunctionConfig(pipeline="echo", model_id="echo-1", price=Price(price_per_unit=3))],
                        sections=[PricingSettings(ledger=str(tmp_path / "usage.sqlite")), tracing(receiver, "gw")])
    _, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})
    r = client.post("/echo", json={"prompt": "hey"})
    assert r.status_code == 200 and r.headers["x-warmgate-price"] == "9"
    spans = receiver.wait_for(lambda got: server_span(got, "gw", "/echo") is not None)
    root = server_span(spans, "gw", "/echo")
    steps = sorted(children(spans, root).values(), key=lambda s: s.start_ns)
    assert [s.name for s in steps] == ["quote and hold", "queue wait", "execute local", "encode", "ledger write"]
    assert all(root.start_ns <= s.start_ns <= s.end_ns <= root.end_ns for s in steps)


def test_a_failed_request_has_its_spans_in_error_with_the_reason(receiver, warmgate_server):
    runner = MockRunner()
    runner.enqueue(RuntimeError("the model fell over"))
    settings = Settings(functions=[FunctionConfig(pipeline="mock", model_id="m")], sections=[tracing(receiver, "gw")])
    _, client = warmgate_server(settings, pipelines={"mock": mock_pipeline("mock", runner)})
    r = client.post("/mock", json={"prompt": "x"})
    assert r.status_code == 500
    spans = receiver.wait_for(lambda got: server_span(got, "gw", "/mock") is not None)
    root = server_span(spans, "gw", "/mock")
    assert root.status_code == ERROR and "the model fell over" in root.status_message
    assert root.attributes["error.type"] == "500"
    execute = children(spans, root)["execute local"]
    assert execute.status_code == ERROR and "the model fell over" in execute.status_message


def test_a_client_error_leaves_the_server_span_unset_and_fails_the_step(receiver, warmgate_server):
    settings = Settings(functions=[FunctionConfig(pipeline="echo", model_id="echo-1")],
                        auth=AuthSettings(api_keys=["secret"]), sections=[tracing(receiver, "gw")])
    _, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})
    assert client.post("/echo", json={"prompt": "x"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    spans = receiver.wait_for(lambda got: server_span(got, "gw", "/echo") is not None)
    root = server_span(spans, "gw", "/echo")
    assert root.status_code == 0 and root.attributes["http.response.status_code"] == 401
    auth = children(spans, root)["auth"]
    assert auth.status_code == ERROR and "Invalid bearer token" in auth.status_message


def test_the_trace_id_is_in_the_request_log_line(receiver, warmgate_server, capfd):
    settings = Settings(functions=[FunctionConfig(pipeline="echo", model_id="echo-1")],
                        gateway=GatewaySettings(log_format="json"), sections=[tracing(receiver, "gw")])
    _, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    r = client.post("/echo", json={"prompt": "x"}, headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
    assert r.status_code == 200
    spans = receiver.wait_for(lambda got: server_span(got, "gw", "/echo") is not None)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line.get("event") == "request" and line.get("path") == "/echo"]
    assert line["trace_id"] == trace_id and line["request_id"] == r.headers["x-request-id"]
    assert server_span(spans, "gw", "/echo").attributes["warmgate.request_id"] == r.headers["x-request-id"]


@pytest.mark.parametrize("length", [1, 102, 103, 128])  # 102 and 103: where its encoded length stops fitting a byte
def test_a_callers_request_id_of_any_length_is_the_server_spans_attribute(receiver, warmgate_server, length):
    settings = Settings(functions=[FunctionConfig(pipeline="echo", model_id="echo-1")], sections=[tracing(receiver, "gw")])
    _, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})
    request_id = ("req-" + "0123456789abcdef" * 8)[:length]
    r = client.post("/echo", json={"prompt": "x"}, headers={"X-Request-Id": request_id})
    assert r.status_code == 200 and r.headers["x-request-id"] == request_id
    spans = receiver.wait_for(lambda got: server_span(got, "gw", "/echo") is not None)
    assert server_span(spans, "gw", "/echo").attributes["warmgate.request_id"] == request_id


def test_sampling_keeps_a_callers_decision_and_samples_new_traces_by_ratio(receiver, warmgate_server):
    settings = Settings(functions=[FunctionConfig(pipeline="echo", model_id="echo-1")],
                        sections=[tracing(receiver, "gw", sample_ratio=0.0)])
    _, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})
    sampled = "0af7651916cd43dd8448eb211c80319c"
    for flags, trace_id in (("00", "1" * 32), ("01", sampled)):
        headers = {"traceparent": f"00-{trace_id}-b7ad6b7169203331-{flags}"}
        assert client.post("/echo", json={"prompt": "x"}, headers=headers).status_code == 200
    for _ in range(5):  # no traceparent: a new trace, never sampled at ratio 0
        assert client.post("/echo", json={"prompt": "x"}).status_code == 200
    spans = receiver.wait_for(lambda got: server_span(got, "gw", "/echo") is not None)
    assert {s.trace_id for s in spans} == {sampled}


@pytest.fixture(params=["down", "stuck"])
def broken_collector(request):
    """A collector's endpoint that refuses connections, or one that takes posts and never answers."""
    if request.param == "down":
        yield f"http://127.0.0.1:{free_port()}", lambda: False
        return
    with OTLPReceiver(hang=True) as stuck:
        yield stuck.endpoint, lambda: stuck.pending > 0


def test_a_collector_that_is_down_or_stuck_never_fails_a_request(broken_collector, warmgate_server):
    endpoint, holding_a_post = broken_collector
    settings = Settings(functions=[FunctionConfig(pipeline="echo", model_id="echo-1", max_concurrency=4)],
                        sections=[TracingSettings(endpoint=endpoint, max_queue=4, timeout=1.0)])
    server, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})
    exporter = server.app.state.tracer.exporter
    assert client.post("/echo", json={"prompt": "x"}).status_code == 200
    assert wait_for(lambda: exporter.failures > 0 or holding_a_post())  # the export has failed, or hangs
    answers = [client.post("/echo", json={"prompt": str(i)}).status_code for i in range(100)]
    assert answers == [200] * 100
    assert exporter.dropped > 0  # the queue is bounded: spans are dropped, requests never wait for it


def test_bad_tracing_settings_are_refused_at_start_naming_the_field(tmp_path, monkeypatch):
    path = tmp_path / "serverless.yaml"
    for body, field in (("tracing:\n  endpoint: collector:4318\n", "tracing.endpoint"),
                        ("tracing:\n  endpoint: http://\n", "tracing.endpoint"),
                        ("tracing:\n  endpoint: http://c:4318\n  sample_ratio: 1.5\n", "tracing.sample_ratio"),
                        ("tracing:\n  endpoint: http://c:4318\n  sample_ratio: -0.1\n", "tracing.sample_ratio")):
        path.write_text(body)
        with pytest.raises(ConfigError) as error:
            load_settings(path, env={})
        assert field in str(error.value), body
    for variable, value in (("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector"),
                            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url")):
        monkeypatch.setenv(variable, value)
        with pytest.raises(ConfigError, match=variable):
            create_app(Settings())
        monkeypatch.delenv(variable)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "2")
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER_ARG"):
        create_app(Settings())


def test_the_otel_variables_configure_tracing(receiver, warmgate_server, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=abc")
    settings = Settings(functions=[FunctionConfig(pipeline="echo", model_id="echo-1")])
    _, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})
    assert client.post("/echo", json={"prompt": "x"}).status_code == 200
    receiver.wait_for(lambda got: server_span(got, "from-env", "/echo") is not None)
    assert receiver.paths[0] == "/v1/traces" and receiver.headers[0]["x-collector-key"] == "abc"


_OFF = """
import sys
import httpx
from litestar import Litestar
from warmgate import FunctionConfig, Settings
from warmgate.core.http.app import create_app
from warmgate.testing import EchoPipeline, serve

Litestar(route_handlers=[])  # Litestar's own app looks for its OpenTelemetry plugin when the API is installed
litestars = {name for name in sys.modules if name.startswith("opentelemetry")}
app = create_app(Settings(functions=[FunctionConfig(pipeline="echo", model_id="echo-1")]),
                 pipelines={"echo": EchoPipeline().spec})
with serve(app) as server:
    assert httpx.post(server.url + "/echo", json={"prompt": "x"}).status_code == 200
print(sorted(name for name in sys.modules if name.startswith("opentelemetry") and name not in litestars
             or name.startswith("warmgate.core.tracing.") and name != "warmgate.core.tracing.spans"
             and name != "warmgate.core.tracing.settings" and name != "warmgate.core.tracing.setup"))
"""


def test_tracing_off_imports_no_opentelemetry_module():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run([sys.executable, "-c", _OFF], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"  # nor the exporter, the encoder or the tracer


def test_serve_refuses_bad_tracing_settings_in_one_line(tmp_path):
    bad = tmp_path / "serverless.yaml"
    bad.write_text("tracing:\n  endpoint: http://collector:4318\n  sample_ratio: 2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run([sys.executable, "-m", "warmgate", "serve", "--config", str(bad), "--port", str(free_port())],
                            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Error: invalid configuration: {bad}: line 3, tracing.sample_ratio: Expected `float` <= 1.0"]
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "collector:4318"
    elsewhere = tmp_path / "no-config"  # no ./serverless.yaml: the built-in defaults, and the variable
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-m", "warmgate", "serve", "--port", str(free_port())],
                            capture_output=True, text=True, timeout=120, env=env, cwd=elsewhere)
    assert result.returncode == 1 and "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: expected an http(s) URL" in result.stderr


def test_the_standard_variables_turn_tracing_off(receiver, monkeypatch):
    settings = Settings(sections=[tracing(receiver, "gw")])
    for variable, value in (("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_EXPORTER", "none")):
        monkeypatch.setenv(variable, value)
        assert create_app(settings).state.tracer is None
        monkeypatch.delenv(variable)
    assert create_app(settings).state.tracer is not None


def test_an_unsampled_request_is_passed_on_unsampled_so_the_runner_records_nothing(receiver, warmgate_server, capfd):
    """The runner samples every new trace, but the gateway's decision (not sampled, ratio 0) goes
    with each request (``traceparent`` flagged 00): one trace id in both log lines, no spans."""
    json_logs = GatewaySettings(log_format="json")
    runner, _ = warmgate_server(Settings(functions=[FunctionConfig(pipeline="echo", model_id="echo-1")],
                                         gateway=json_logs, sections=[tracing(receiver, "runner", sample_ratio=1.0)]),
                                pipelines={"echo": EchoPipeline().spec})
    remote = FunctionConfig(pipeline="echo", model_id="echo-1", executor="remote", url=runner.url)
    _, client = warmgate_server(Settings(functions=[remote], gateway=json_logs,
                                         sections=[tracing(receiver, "gateway", sample_ratio=0.0)]),
                                pipelines={"echo": EchoPipeline().spec})
    callers = "2" * 32
    unsampled = [client.post("/echo", json={"prompt": "x"}),
                 client.post("/echo", json={"prompt": "x"}, headers={"traceparent": f"00-{callers}-{'3' * 16}-00"})]
    assert [r.status_code for r in unsampled] == [200, 200]
    sampled = "4" * 32  # then a sampled one: once its runner spans are in, the runner's earlier ones would be too
    assert client.post("/echo", json={"prompt": "x"}, headers={"traceparent": f"00-{sampled}-{'5' * 16}-01"}).is_success
    spans = receiver.wait_for(lambda got: server_span(got, "runner", "/echo") is not None)
    assert {s.trace_id for s in spans if s.attributes.get("url.path") == "/echo"} == {sampled}
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    traces: dict[str, set[str]] = {}
    for line in lines:
        if line.get("event") == "request" and line.get("path") == "/echo":
            traces.setdefault(line["request_id"], set()).add(line["trace_id"])
    first, second = (traces[r.headers["x-request-id"]] for r in unsampled)
    assert len(first) == 1 and second == {callers}  # the gateway's and the runner's line agree

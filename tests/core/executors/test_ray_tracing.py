"""A traced request to a ray function: the replica continues the gateway's trace (the handle call
carries ``traceparent``), for a JSON answer and a stream, exported to the same OTLP receiver,
whether the gateway's tracing comes from its settings or only from its ``OTEL_*`` variables
(which a replica's worker, started before they were set, does not have)."""

import httpx
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.executors import ray_serve
from warmgate.core.executors.ray_settings import RaySettings
from warmgate.core.http.app import create_app
from warmgate.core.settings import Resources, Scaling
from warmgate.core.tracing.settings import TracingSettings
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import EchoPipeline
from warmgate.testing import serve as serve_app
from warmgate.testing.otlp import OTLPReceiver

pytestmark = pytest.mark.ray

SERVER = 2


@pytest.mark.parametrize("configured", ["settings", "variables"])
def test_a_ray_replica_continues_the_gateways_trace(configured, monkeypatch):
    with OTLPReceiver() as receiver:
        config = FunctionConfig(pipeline="echo", model_id="echo-1", executor="ray", max_concurrency=4,
                                scaling=Scaling(idle_timeout=30), resources=Resources(cpu=0.5))
        sections = [RaySettings(num_cpus=2), PricingSettings(ledger="off")]
        if configured == "settings":
            sections.append(TracingSettings(endpoint=receiver.endpoint, service_name="gw"))
        else:
            ray_serve._connect(sections[0])  # the cluster's workers start without the variables
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
            monkeypatch.setenv("OTEL_SERVICE_NAME", "gw")
        settings = Settings(functions=[config], sections=sections)
        with serve_app(create_app(settings, pipelines={"echo": EchoPipeline().spec})) as server, \
                httpx.Client(base_url=server.url, timeout=120) as client:
            assert client.post("/echo", json={"prompt": "hi"}).status_code == 200
            streamed = client.post("/echo", json={"prompt": "a b", "stream": True})
            assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
            spans = receiver.wait_for(lambda got: sum(s.name == "replica echo:echo-1" for s in got) == 2, timeout=60)
    fronts = {s.trace_id: s for s in spans if s.kind == SERVER and s.attributes.get("url.path") == "/echo"}
    executes = {s.span_id: s for s in spans if s.name == "execute ray"}
    replicas = [s for s in spans if s.name == "replica echo:echo-1"]
    assert {s.service for s in spans} == {"gw"}
    for replica in replicas:
        execute = executes[replica.parent_id]  # the handle call's span is the replica span's parent
        assert execute.trace_id == replica.trace_id and execute.parent_id == fronts[replica.trace_id].span_id
    assert len({r.trace_id for r in replicas}) == 2

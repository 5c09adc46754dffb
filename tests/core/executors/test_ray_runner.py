"""A Ray Serve deployment made by this gateway as one runner of a routed function, beside a
remote runner: it serves when the remote one is down, streams, and shows in ``/functions``."""

import httpx
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.executors.ray_settings import RaySettings
from warmgate.core.settings import Resources, Routing, RunnerConfig, Scaling
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import EchoPipeline, wait_for

pytestmark = pytest.mark.ray

DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens


def runners_of(client):
    [fn] = client.get("/functions").json()["functions"]
    return fn["runners"]


def test_a_ray_deployment_serves_as_a_runner_when_the_remote_one_is_down():
    from warmgate.core.http.app import create_app
    from warmgate.testing import serve as serve_app

    config = FunctionConfig(pipeline="echo", model_id="echo-1", executor="remote", max_concurrency=2,
                            runners=[RunnerConfig(url=DEAD), RunnerConfig(executor="ray")],
                            routing=Routing(cooldown=60, cooldown_failures=1, health_interval=0.5),
                            scaling=Scaling(idle_timeout=60, max_instances=1), resources=Resources(cpu=0.5))
    settings = Settings(functions=[config], sections=[RaySettings(num_cpus=2), PricingSettings(ledger="off")])
    with serve_app(create_app(settings, pipelines={"echo": EchoPipeline().spec})) as server, \
            httpx.Client(base_url=server.url, timeout=180) as client:
        r = client.post("/echo", json={"prompt": "hi", "repeat": 2})
        assert r.status_code == 200, r.text
        assert r.json() == {"text": "hi hi", "model_id": "echo-1"}
        with client.stream("POST", "/echo", json={"prompt": "a b c", "stream": True}) as streamed:
            assert streamed.status_code == 200
            assert b"".join(streamed.iter_raw()).endswith(b"data: [DONE]\n\n")
        # a bad request is the caller's: answered as is, never a runner's failure
        assert client.post("/echo", json={"prompt": 3}).status_code == 422
        dead, ray = runners_of(client)
        assert dead["url"] == DEAD and dead["state"] == "UNREACHABLE"
        assert ray["url"] == "ray" and ray["warm"] is True and ray["failures"] == 0
        assert ray["requests"] >= 2
        assert wait_for(lambda: runners_of(client)[1]["in_flight"] == 0, timeout=10)

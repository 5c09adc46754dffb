"""The ray executor on a local Ray cluster: a function deployed with 0 replicas serves its first
request from zero, returns to zero after its idle delay, serves again, and buffers concurrent
requests that arrive at zero instead of failing them."""

import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from warmgate import FunctionConfig, Settings
from warmgate.core.executors.ray_settings import RaySettings
from warmgate.core.settings import Resources, Scaling
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import EchoPipeline, wait_for

pytestmark = pytest.mark.ray


def running_replicas(app):
    from ray import serve

    status = serve.status().applications.get(app)
    return status.deployments["FunctionReplica"].replica_states.get("RUNNING", 0) if status else 0


@pytest.fixture(scope="module")
def ray_gateway():
    from warmgate.core.http.app import create_app
    from warmgate.testing import serve as serve_app

    config = FunctionConfig(pipeline="echo", model_id="echo-1", executor="ray", max_concurrency=4,
                            scaling=Scaling(idle_timeout=2, max_instances=2), resources=Resources(cpu=0.5))
    settings = Settings(functions=[config], sections=[RaySettings(num_cpus=2), PricingSettings(ledger="off")])
    with serve_app(create_app(settings, pipelines={"echo": EchoPipeline().spec})) as server, \
            httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def test_first_request_is_served_from_zero_replicas_then_it_scales_back_to_zero(ray_gateway):
    app = "echo-echo-1"
    r = ray_gateway.post("/echo", json={"prompt": "hi", "repeat": 2})
    assert r.status_code == 200, r.text
    assert r.json() == {"text": "hi hi", "model_id": "echo-1"}
    assert running_replicas(app) >= 1
    [fn] = ray_gateway.get("/functions").json()["functions"]
    assert fn["executor"] == "ray" and fn["state"] in ("idle", "warm")
    assert wait_for(lambda: running_replicas(app) == 0, timeout=60, interval=0.5)  # idle_timeout 2 s
    again = ray_gateway.post("/echo", json={"prompt": "again"})
    assert again.status_code == 200 and again.json()["text"] == "again"


def replica_pids(app):
    out = subprocess.run(["pgrep", "-f", f"ServeReplica:{app}:"], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def waiting_standbys():
    """Pids of live workers that finished their standby imports and wait for a replica (their
    ready markers, see ``warmgate.core.executors.ray_standby``)."""
    pids = [int(m.name.removeprefix("warmgate-standby-")) for m in Path(tempfile.gettempdir()).glob("warmgate-standby-*")]
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def started_at(pid):
    """A process's start, in Unix seconds, from /proc (clock ticks after boot)."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def test_a_start_from_zero_takes_over_a_standby_worker_started_before_the_request(ray_gateway):
    app = "echo-echo-1"
    assert ray_gateway.post("/echo", json={"prompt": "warm"}).status_code == 200  # its replica starts a standby
    assert wait_for(lambda: running_replicas(app) == 0, timeout=60, interval=0.5)
    # on a loaded machine the standby's imports can take longer than the scale-down: wait until one waits
    assert wait_for(waiting_standbys, timeout=60, interval=0.2), "no standby worker finished its imports"
    time.sleep(1.5)  # pid start times have clock-tick resolution
    requested = time.time()
    assert ray_gateway.post("/echo", json={"prompt": "from zero"}).json()["text"] == "from zero"
    [pid] = replica_pids(app)
    assert started_at(pid) < requested - 1  # the replica's process was waiting, not started for it
    assert "warmgate.testing" in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")


def test_concurrent_requests_at_zero_are_buffered_not_failed(ray_gateway):
    assert wait_for(lambda: running_replicas("echo-echo-1") == 0, timeout=60, interval=0.5)

    async def burst():
        async with httpx.AsyncClient(base_url=str(ray_gateway.base_url), timeout=120) as client:
            return await asyncio.gather(*[client.post("/echo", json={"prompt": f"p{i}"}) for i in range(8)])

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 8
    assert sorted(r.json()["text"] for r in responses) == sorted(f"p{i}" for i in range(8))


def test_streams_errors_and_bad_input_behave_as_for_local_functions(ray_gateway):
    with ray_gateway.stream("POST", "/echo", json={"prompt": "one two", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = r.read()
    assert body == b'data: {"delta":"one"}\n\ndata: {"delta":"two"}\n\ndata: [DONE]\n\n'
    failed = ray_gateway.post("/echo", json={"prompt": "x", "fail": True})
    assert failed.status_code == 500 and "echo was asked to fail" in failed.json()["detail"]["msg"]
    assert ray_gateway.post("/echo", json={"prompt": ""}).status_code == 422


def test_deploy_ray_dry_run_prints_the_serve_config(tmp_path):
    import yaml

    from warmgate.core.cli import cli
    from warmgate.core.plugins import pm

    config = tmp_path / "serverless.yaml"
    config.write_text(json.dumps({"functions": [
        {"pipeline": "llm", "model_id": "org/chat", "executor": "ray",
         "scaling": {"max_instances": 3, "idle_timeout": 120, "target_concurrency": 4},
         "resources": {"gpu": 1, "cpu": 2, "memory": "16GiB"}, "max_concurrency": 8},
        {"pipeline": "text-to-image", "model_id": "org/sd"}]}))
    pm.hook.register_commands(cli=cli)
    result = CliRunner().invoke(cli, ["deploy", "ray", "--config", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    [application] = yaml.safe_load(result.output)["applications"]
    assert application["name"] == "llm-org-chat" and application["import_path"] == "warmgate.core.executors.ray_serve:build_app"
    assert application["args"] == {"config": str(config), "function": "llm:org/chat"}
    [deployment] = application["deployments"]
    assert deployment["max_ongoing_requests"] == 8
    actor = deployment["ray_actor_options"]
    assert {k: actor[k] for k in ("num_cpus", "num_gpus", "memory")} == {"num_cpus": 2, "num_gpus": 1, "memory": 16 * 2**30}
    preload = actor["runtime_env"]["env_vars"]["WARMGATE_STANDBY_MODULES"].split(",")  # scaling.standby: on
    assert {"warmgate.plugins.llm", "torch", "transformers.modeling_utils"} <= set(preload)
    scaling = deployment["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["initial_replicas"], scaling["max_replicas"]) == (0, 0, 3)
    assert (scaling["downscale_to_zero_delay_s"], scaling["upscale_delay_s"], scaling["target_ongoing_requests"]) == (
        120, 0, 4)


def test_standby_off_leaves_the_replicas_runtime_environment_alone():
    from warmgate.core.executors.ray_serve import deployment_options
    from warmgate.testing import EchoPipeline

    specs = {"echo": EchoPipeline().spec}
    on = deployment_options(FunctionConfig(pipeline="echo", model_id="e", executor="ray"), specs)
    off = deployment_options(FunctionConfig(pipeline="echo", model_id="e", executor="ray",
                                            scaling=Scaling(standby=False)), specs)
    assert on["ray_actor_options"]["runtime_env"]["env_vars"]["WARMGATE_STANDBY_MODULES"] == (
        "warmgate.core.executors.ray_serve,warmgate.testing.pipelines")
    assert "runtime_env" not in off["ray_actor_options"]

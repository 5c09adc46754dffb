"""The console's functions table shows each runner of a routed function with its state: one
runner process up and warm, one port with nobody listening."""

from __future__ import annotations

import json

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import Routing, RunnerConfig
from warmgate.testing import EchoPipeline
from warmgate.testing.process import free_port, gateway_process


def test_the_functions_table_lists_runners_with_their_state(warmgate_server, page, artifacts, tmp_path):
    config = tmp_path / "runner.yaml"
    config.write_text(json.dumps({"gateway": {"access_log": False}, "pricing": {"ledger": "off"},
                                  "functions": [{"pipeline": "echo", "model_id": "echo-1", "warm": True}]}))
    down = f"http://127.0.0.1:{free_port()}"
    with gateway_process(config) as runner:
        fn = FunctionConfig(pipeline="echo", model_id="echo-1", executor="remote", warm=True,
                            runners=[RunnerConfig(url=runner.url), RunnerConfig(url=down)],
                            routing=Routing(health_interval=0.2))
        server, client = warmgate_server(Settings(functions=[fn]), pipelines={"echo": EchoPipeline().spec})
        assert client.post("/echo", json={"prompt": "hi"}).status_code == 200
        page.goto(f"{server.url}/console")
        page.wait_for_selector("body[data-ready=true]")
        row = page.locator('#functions-table tr[data-function="echo:echo-1"]')
        up_line = row.locator(f'.runner[data-runner="{runner.url}"]')
        up_line.wait_for()
        assert up_line.get_attribute("data-state") in ("OK", "IDLE")
        assert "warm" in up_line.inner_text() and "1 req" in up_line.inner_text()
        down_line = row.locator(f'.runner[data-runner="{down}"]')
        assert down_line.get_attribute("data-state") == "UNREACHABLE"
        assert "cold" in down_line.inner_text() and "Connect" in down_line.inner_text()
        row.screenshot(path=artifacts / "function-runners.png")

"""The ``warmgate`` command in real subprocesses, with a third-party plugin installed by pip
from its own package directory (tests/fixtures/warmgate-shout): discovery, allow-list, serve."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "warmgate-shout"


@pytest.fixture(scope="session")
def shout_site(tmp_path_factory):
    """The plugin installed the way a real package is: pip builds it and writes its entry point."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(FIXTURE)], check=True, capture_output=True, timeout=300)
    assert list(target.glob("warmgate_shout-0.3.1.dist-info"))
    return target


def _env(site=None, **extra):
    # the session's cache dir (warmgate.testing.fixtures) stays: nothing goes to the user's cache
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMGATE_") or k == "WARMGATE_CACHE_DIR"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    env.update(extra)
    return env


def warmgate(*args, site=None, **env):
    """The CLI in a fresh process, run where no ./serverless.yaml is (the repository has one)."""
    return subprocess.run([sys.executable, "-m", "warmgate", *args], capture_output=True, text=True,
                          env=_env(site, **env), timeout=120, cwd=tempfile.gettempdir())


def test_installed_plugin_is_discovered_from_its_entry_point(shout_site):
    result = warmgate("plugins", "--json", site=shout_site)
    assert result.returncode == 0, result.stderr
    [shout] = [p for p in json.loads(result.stdout) if p["name"] == "shout"]
    assert shout["package"] == "warmgate-shout" and shout["version"] == "0.3.1"
    assert shout["hooks"] == ["register_commands", "register_pipelines"]


@pytest.mark.parametrize(("allow", "loaded"), [("shout", True), ("warmgate-shout", True),
                                               ("something-else", False), ("", False)])
def test_load_plugins_allow_list(shout_site, allow, loaded):
    result = warmgate("plugins", "--json", site=shout_site, WARMGATE_LOAD_PLUGINS=allow)
    assert result.returncode == 0, result.stderr
    assert ("shout" in [p["name"] for p in json.loads(result.stdout)]) is loaded


def test_plugin_commands_join_the_cli(shout_site):
    result = warmgate("shout", "quiet please", site=shout_site)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "QUIET PLEASE\n"


def test_functions_and_openapi_commands_see_the_plugin(shout_site, tmp_path):
    result = warmgate("functions", "--json", site=shout_site, HOME=str(tmp_path), WARMGATE_LOAD_PLUGINS="shout")
    assert result.returncode == 0, result.stderr
    assert [f["name"] for f in json.loads(result.stdout)] == ["shout:shout-base"]
    doc = json.loads(warmgate("openapi", site=shout_site).stdout)
    assert doc["paths"]["/shout"]["post"]["operationId"] == "genShout"


def test_functions_command_reports_config_errors_with_their_location(shout_site, tmp_path):
    bad = tmp_path / "serverless.yaml"
    bad.write_text("functions:\n  - pipeline: shout\n    warm: maybe\n")
    result = warmgate("functions", "--config", str(bad), site=shout_site)
    assert result.returncode != 0
    assert f"{bad}: line 3, functions[0].warm: Expected `bool`" in result.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_demo_profile_builds_a_tiny_model_on_first_use(shout_site, tmp_path):
    port = _free_port()
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-m", "warmgate", "serve", "--profile", "demo", "--port", str(port)],
                            env=_env(shout_site, WARMGATE_CACHE_DIR=str(cache), WARMGATE_LOG_FORMAT="json",
                                     WARMGATE_LOAD_PLUGINS="shout"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    health = client.get("/health")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                    time.sleep(0.05)
            assert health.json() == {"status": "IDLE"}
            [fn] = client.get("/functions").json()["functions"]
            assert (fn["model_id"], fn["state"], fn["demo"]) == ("warmgate-demo/tiny-shout", "cold", True)
            assert not cache.exists()
            r = client.post("/shout", json={"text": "hi"}, headers={"X-Request-Id": "req-shout-1"})
            assert r.status_code == 200, r.text
            assert r.json()["text"] == "HI!!!"  # the suffix comes from the tiny model it built
            assert (cache / "demo" / "warmgate-demo--tiny-shout" / "shout.json").is_file()
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    by_event = {line["event"]: line for line in lines}
    assert "demo_model_building" in by_event and "demo_model_built" in by_event
    # every line logged while serving the request names it, including the cold load's lines
    for event in ("demo_model_building", "function_loading", "function_loaded"):
        assert by_event[event]["request_id"] == "req-shout-1", event
    [access] = [line for line in lines if line["event"] == "request" and line["path"] == "/shout"]
    assert access["request_id"] == "req-shout-1" and access["status"] == 200 and access["method"] == "POST"


def test_serve_refuses_an_invalid_config_before_starting(shout_site, tmp_path):
    bad = tmp_path / "serverless.yaml"
    bad.write_text("functions:\n  - pipeline: nope\n")
    result = warmgate("serve", "--config", str(bad), "--port", str(_free_port()), site=shout_site,
                      WARMGATE_LOAD_PLUGINS="shout")
    assert result.returncode != 0
    assert "functions[0].pipeline: unknown pipeline 'nope'; installed: shout" in result.stderr


@pytest.mark.parametrize("command", [
    ["serve"], ["functions"], ["deploy", "ray", "--dry-run"], ["keys", "create"], ["keys", "list"],
    ["keys", "revoke", "wk_x"], ["keys", "topup", "wk_x", "5"], ["usage"],
])
def test_every_command_reports_an_invalid_config_in_one_line(tmp_path, command):
    bad = tmp_path / "serverless.yaml"
    bad.write_text("functions:\n  - pipeline: text-to-image\n    warm: maybe\n")
    result = warmgate(*command, "--config", str(bad), HOME=str(tmp_path))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"Error: invalid configuration: {bad}: line 3, functions[0].warm: Expected `bool`, got `str`"]

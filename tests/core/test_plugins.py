"""The plugin system: every hook exercised, registration validated, hooks documented."""

import asyncio
import inspect
import re
from pathlib import Path
from typing import ClassVar

import click
import msgspec
import pytest
from click.testing import CliRunner

import warmgate
from warmgate import PipelineSpec, Settings
from warmgate.core import hookspecs
from warmgate.core.cli import cli
from warmgate.core.plugins import await_me_maybe, get_pipelines, list_plugins, pm
from warmgate.core.settings import Scaling
from warmgate.testing import EchoPipeline, EchoRequest, MockRunner, mock_pipeline, wait_for

ROOT = Path(__file__).resolve().parents[2]


class PipelinePlugin:
    def __init__(self, *specs):
        self.specs = specs

    @warmgate.hookimpl
    def register_pipelines(self, register):
        for spec in self.specs:
            register(spec)


def test_hook_register_pipelines(register_plugin, warmgate_server):
    echo = EchoPipeline(name="throwaway")
    register_plugin(PipelinePlugin(echo.spec), "undo-throwaway")
    specs = get_pipelines()
    assert specs["throwaway"].plugin == "undo-throwaway"
    _, client = warmgate_server(Settings())  # pipelines come from the plugins
    assert client.post("/throwaway", json={"prompt": "hi"}).json() == {"text": "hi", "model_id": "echo-1"}
    assert "/throwaway" in client.get("/openapi.json").json()["paths"]
    assert {"name": "undo-throwaway", "hooks": ["register_pipelines"]} in list_plugins()


def test_duplicate_pipeline_names_both_plugins(register_plugin):
    register_plugin(PipelinePlugin(EchoPipeline(name="dup").spec), "undo-first")
    register_plugin(PipelinePlugin(EchoPipeline(name="dup").spec), "undo-second")
    with pytest.raises(ValueError, match="'dup' is registered by both 'undo-first' and 'undo-second'"):
        get_pipelines()


def test_duplicate_paths_name_both_plugins(register_plugin):
    register_plugin(PipelinePlugin(EchoPipeline(name="one", paths=("/same",)).spec), "undo-one")
    register_plugin(PipelinePlugin(EchoPipeline(name="two", paths=("/same",)).spec), "undo-two")
    with pytest.raises(ValueError, match="/same is claimed by both"):
        get_pipelines()


def test_registering_something_that_is_not_a_spec_is_a_type_error(register_plugin):
    register_plugin(PipelinePlugin({"name": "dict"}), "undo-bad")
    with pytest.raises(TypeError, match="plugin 'undo-bad' registered .* not a warmgate.PipelineSpec"):
        get_pipelines()


class LifecyclePlugin:
    def __init__(self):
        self.events = []

    @warmgate.hookimpl
    def startup(self, app):
        self.events.append(("startup", sorted(app.state.functions.functions)))

    @warmgate.hookimpl
    def shutdown(self, app):
        async def later():  # hooks may return an awaitable
            self.events.append(("shutdown", app.state.functions.health()))
        return later()


def test_hook_startup(register_plugin, warmgate_server):
    plugin = register_plugin(LifecyclePlugin(), "undo-lifecycle")
    warmgate_server(Settings(), pipelines={"echo": EchoPipeline().spec})
    assert plugin.events == [("startup", ["echo:echo-1"])]


def test_hook_shutdown(register_plugin):
    from warmgate.testing import serve

    plugin = register_plugin(LifecyclePlugin(), "undo-lifecycle")
    with serve(warmgate.create_app(Settings(), pipelines={"echo": EchoPipeline().spec})) as server:
        assert server.url.startswith("http://127.0.0.1:")  # started; leaving the block stops it
    assert plugin.events[-1] == ("shutdown", "IDLE")


class DrainPlugin:
    """Holds a request open until the server drains, as a long poll does."""

    def __init__(self):
        self.events = []
        self.released = None

    @warmgate.hookimpl
    def drain(self, app):
        self.events.append("drain")
        self.released.set()

    @warmgate.hookimpl
    def shutdown(self, app):
        self.events.append("shutdown")


def test_hook_drain(register_plugin):
    import asyncio
    import threading

    import httpx
    from litestar import get

    from warmgate.testing import serve, wait_for

    plugin = register_plugin(DrainPlugin(), "undo-drain")

    @get("/wait")
    async def wait() -> str:
        plugin.released = asyncio.Event()
        await plugin.released.wait()  # only the drain hook ends it
        return "released"

    class Route:
        @warmgate.hookimpl
        def register_routes(self, register):
            register(wait)

    register_plugin(Route(), "undo-drain-route")
    answers = []
    with serve(warmgate.create_app(Settings(), pipelines={"echo": EchoPipeline().spec})) as server:
        waiting = threading.Thread(target=lambda: answers.append(httpx.get(f"{server.url}/wait", timeout=30).text))
        waiting.start()
        assert wait_for(lambda: plugin.released is not None)
    waiting.join(10)
    assert answers == ["released"]  # answered, not cut off at the graceful timeout
    assert plugin.events == ["drain", "shutdown"]


class UsageCollector:
    def __init__(self):
        self.events = []

    @warmgate.hookimpl
    def on_usage(self, event, app):
        self.events.append((event, app))


def test_hook_on_usage(register_plugin, warmgate_server):
    from warmgate.core.settings import Price
    from warmgate.plugins.pricing.settings import PricingSettings

    plugin = register_plugin(UsageCollector(), "undo-usage")
    functions = [warmgate.FunctionConfig(pipeline="echo", model_id="paid", price=Price(price_per_unit=7))]
    server, client = warmgate_server(Settings(functions=functions, sections=[PricingSettings(ledger="off")]),
                                     pipelines={"echo": EchoPipeline().spec})
    client.post("/echo", json={"prompt": "abc"}, headers={"X-Request-Id": "hooked"})
    [(event, app)] = plugin.events
    assert app is server.app
    assert (event.request_id, event.function, event.units, event.wei, event.status) == ("hooked", "echo:paid", 3, 21, 200)
    assert event.duration_ms > 0 and event.prompt_tokens is None


class CommandPlugin:
    @warmgate.hookimpl
    def register_commands(self, cli):
        @cli.command(name="hello-test")
        @click.option("--name", default="world")
        def hello(name):
            click.echo(f"hello {name}")


def test_hook_register_commands(register_plugin):
    register_plugin(CommandPlugin(), "undo-commands")
    try:
        pm.hook.register_commands(cli=cli)  # what main() does before parsing arguments
        result = CliRunner().invoke(cli, ["hello-test", "--name", "gate"])
        assert result.exit_code == 0
        assert result.output == "hello gate\n"
    finally:
        cli.commands.pop("hello-test", None)


def test_await_me_maybe_accepts_values_callables_and_awaitables():
    import asyncio

    async def coro():
        return 3

    assert asyncio.run(await_me_maybe(1)) == 1
    assert asyncio.run(await_me_maybe(lambda: 2)) == 2
    assert asyncio.run(await_me_maybe(coro)) == 3
    assert asyncio.run(await_me_maybe(coro())) == 3


def test_mock_runner_replays_queued_responses_and_records_requests(warmgate_server):
    runner = MockRunner(default={"text": "default", "model_id": "m"})
    runner.enqueue({"text": "first", "model_id": "m"})
    _, client = warmgate_server(Settings(), pipelines={"m": mock_pipeline("m", runner)})
    assert client.post("/m", json={"prompt": "a"}).json()["text"] == "first"
    assert client.post("/m", json={"prompt": "b"}).json()["text"] == "default"
    assert [r.prompt for r in runner.history] == ["a", "b"]


def _hook_names():
    return [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(_, "warmgate_spec")]


def test_every_hook_has_a_test():
    tests = set(globals())
    missing = [name for name in _hook_names() if f"test_hook_{name}" not in tests]
    assert _hook_names() and not missing


def test_every_hook_is_documented_with_its_arguments():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    headings = dict(re.findall(r"^### `(\w+)\(([^)]*)\)`", docs, re.MULTILINE))
    for name in _hook_names():
        args = list(inspect.signature(getattr(hookspecs, name)).parameters)
        assert name in headings, f"docs/plugins.md has no heading for {name}"
        assert [a.strip() for a in headings[name].split(",") if a.strip()] == args


def test_core_never_imports_a_plugin():
    offenders = [str(p) for p in (ROOT / "warmgate" / "core").glob("*.py")
                 if re.search(r"^\s*(from|import) warmgate\.plugins", p.read_text(), re.MULTILINE)]
    assert offenders == []


def test_public_api_is_explicit_and_sorted():
    subpackages = {"core", "testing", "plugins", "pricing", "trickle", "console"}
    public = {name for name in dir(warmgate) if not name.startswith("_")} - subpackages
    assert warmgate.__all__ == sorted(warmgate.__all__)
    assert set(warmgate.__all__) - {"__version__"} == public


def test_the_tutorial_plugin_in_the_docs_is_the_tested_fixture():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    fixture = ROOT / "tests" / "fixtures" / "warmgate-shout"
    assert f"```python\n{(fixture / 'warmgate_shout.py').read_text()}```" in docs
    assert f"```toml\n{(fixture / 'pyproject.toml').read_text()}```" in docs


def test_tiny_model_dir_builds_a_demo_model_once_and_the_loader_uses_it(tiny_model_dir):
    echo = EchoPipeline(name="tiny")
    first = tiny_model_dir(echo.spec)
    assert (first / "config.json").read_text() == '{"model_type": "echo"}'
    stamp = (first / "config.json").stat().st_mtime_ns
    assert tiny_model_dir(echo.spec) == first
    assert (first / "config.json").stat().st_mtime_ns == stamp  # not rebuilt
    runner = echo.spec.load(str(first), {})
    assert runner(warmgate.testing.EchoRequest(prompt="p")).model_id == str(first)


class RoutesPlugin:
    @warmgate.hookimpl
    def register_routes(self, register):
        from litestar import Request, get

        @get("/echo-models", sync_to_thread=False)
        def echo_models(request: Request) -> dict:
            functions = request.app.state.functions.functions.values()
            return {"models": [f.config.model_id for f in functions if f.config.pipeline == "echo"]}

        register(echo_models)


def test_hook_register_routes(register_plugin, warmgate_server):
    register_plugin(RoutesPlugin(), "undo-routes")
    _, client = warmgate_server(Settings(), pipelines={"echo": EchoPipeline().spec})
    assert client.get("/echo-models").json() == {"models": ["echo-1"]}
    assert client.get("/echo-models").headers["x-request-id"]  # the gateway's middleware wraps it too


def test_register_routes_rejects_what_is_not_a_route_handler(register_plugin):
    class Bad:
        @warmgate.hookimpl
        def register_routes(self, register):
            register(lambda request: None)

    register_plugin(Bad(), "undo-bad-routes")
    with pytest.raises(TypeError, match="plugin 'undo-bad-routes' registered .* not a Litestar route handler"):
        warmgate.create_app(Settings(), pipelines={})


class ShoutRequest(msgspec.Struct):
    words: list[str]
    model: str = ""


class ShoutResponse(msgspec.Struct):
    shout: str


async def _shout_via_echo(runner, request):
    """A second wire format in front of the echo functions (as OpenAI chat fronts llm)."""
    echoed = runner(EchoRequest(prompt=" ".join(request.words)))
    return ShoutResponse(shout=echoed.text.upper())


def test_a_spec_can_serve_another_pipelines_functions_in_its_own_wire_format(warmgate_server):
    echo = EchoPipeline()
    shout = PipelineSpec(name="shout-echo", request=ShoutRequest, response=ShoutResponse, serves="echo",
                         invoke=_shout_via_echo, model_field="model", paths=("/v1/shout",), wire="openai")
    _, client = warmgate_server(Settings(), pipelines={"echo": echo.spec, "shout-echo": shout})
    r = client.post("/v1/shout", json={"words": ["a", "b"], "model": "echo-1"})
    assert r.json() == {"shout": "A B"}
    assert client.post("/echo", json={"prompt": "x"}).json()["text"] == "x"
    [fn] = client.get("/functions").json()["functions"]  # one function, shared by both routes
    assert fn["name"] == "echo:echo-1" and fn["requests"] == 2 and echo.loads == 1
    missing = client.post("/v1/shout", json={"words": ["a"], "model": "nope"})
    assert missing.status_code == 404 and "pipeline 'echo'" in missing.json()["detail"]["msg"]


def test_a_spec_serving_an_unknown_pipeline_is_refused(register_plugin):
    orphan = PipelineSpec(name="orphan", request=ShoutRequest, response=ShoutResponse, serves="missing")
    register_plugin(PipelinePlugin(orphan), "undo-orphan")
    with pytest.raises(ValueError, match="serves 'missing', which is not a registered pipeline"):
        get_pipelines()


class HalfPricePlugin:
    @warmgate.hookimpl
    def price_request(self, function, request, units):
        if request.prompt.startswith("promo"):
            return units * 2  # overrides the built-in quote for promo prompts
        return None


def test_hook_price_request(register_plugin, warmgate_server):
    from warmgate.core.settings import FunctionConfig, Price

    echo = EchoPipeline()
    priced = FunctionConfig(pipeline="echo", model_id="echo-1", price=Price(price_per_unit="0.5", currency="eth"))
    _, client = warmgate_server(Settings(functions=[priced]), pipelines={"echo": echo.spec})
    r = client.post("/echo", json={"prompt": "abc"})  # 3 characters at 0.5 ETH
    assert (r.headers["x-warmgate-units"], r.headers["x-warmgate-price"]) == ("3", str(15 * 10**17))
    register_plugin(HalfPricePlugin(), "undo-promo")
    r = client.post("/echo", json={"prompt": "promo!"})
    assert (r.headers["x-warmgate-units"], r.headers["x-warmgate-price"]) == ("6", "12")
    r = client.post("/echo", json={"prompt": "x", "fail": True})  # a failed request still carries its quote
    assert r.status_code == 500 and r.headers["x-warmgate-price"] == str(5 * 10**17)


def test_unpriced_functions_carry_no_price_headers(warmgate_server):
    _, client = warmgate_server(Settings(), pipelines={"echo": EchoPipeline().spec})
    r = client.post("/echo", json={"prompt": "abc"})
    assert "x-warmgate-price" not in r.headers and "x-warmgate-units" not in r.headers


def test_deferred_imports_its_module_only_when_called():
    import sys

    from warmgate.core.functions.spec import deferred

    sys.modules.pop("colorsys", None)
    to_hls = deferred("colorsys:rgb_to_hls")
    assert "colorsys" not in sys.modules and to_hls.__name__ == "rgb_to_hls"
    assert to_hls(1.0, 0.0, 0.0) == (0.0, 0.5, 1.0)
    assert "colorsys" in sys.modules
    with pytest.raises(ValueError, match="package.module:function"):
        deferred("colorsys.rgb_to_hls")



class TeamAuthPlugin:
    """Accepts ``team-<name>`` tokens (async, as a plugin asking an identity service would)."""

    @warmgate.hookimpl
    def authenticate(self, token, app):
        from warmgate.core.http.auth import Caller

        async def lookup():
            if token == "team-banned":
                raise warmgate.core.http.errors.Unauthorized("team-banned is suspended")
            return Caller(key=token, functions=frozenset({"cheap"})) if token.startswith("team-") else None

        return lookup()


def test_hook_authenticate(register_plugin, warmgate_server):
    from warmgate.core.settings import AuthSettings, FunctionConfig

    register_plugin(TeamAuthPlugin(), "undo-team-auth")
    functions = [FunctionConfig(pipeline="echo", model_id="echo-1", aliases=["cheap"]),
                 FunctionConfig(pipeline="echo", model_id="echo-2", aliases=["dear"])]
    _, client = warmgate_server(Settings(functions=functions, auth=AuthSettings(api_keys=["operator"])),
                                pipelines={"echo": EchoPipeline().spec})

    def call(token, model):
        return client.post("/echo", json={"prompt": "x", "model_id": model}, headers={"Authorization": f"Bearer {token}"})

    assert call("team-a", "cheap").status_code == 200
    refused = call("team-a", "dear")  # a key limited to some functions: 403 naming what it may call
    assert refused.status_code == 403 and "may call: cheap" in refused.json()["detail"]["msg"]
    assert call("operator", "dear").status_code == 200  # the operator keys are still tried after the hooks
    banned = call("team-banned", "cheap")
    assert banned.status_code == 401 and banned.json()["detail"]["msg"] == "team-banned is suspended"
    assert call("stranger", "cheap").status_code == 401


class PerMinutePlugin:
    """Admits two requests of team-a's key, then refuses; records the ends it is told of."""

    def __init__(self):
        self.admitted = 0
        self.ended = []

    @warmgate.hookimpl
    def authenticate(self, token, app):
        return warmgate.core.http.auth.Caller(key=token) if token.startswith("team-") else None

    @warmgate.hookimpl
    def limit_request(self, caller, app):
        if caller.key != "team-a":
            return None
        if self.admitted == 2:
            raise warmgate.core.http.errors.RateLimited("two a minute", retry_after=42.5, headers={"x-left": "0"})
        self.admitted += 1
        plugin = self

        class Admission:
            headers = [(b"x-left", str(2 - self.admitted).encode())]

            async def end(self, tokens):
                plugin.ended.append(tokens)

        return Admission()


def test_hook_limit_request(register_plugin, warmgate_server):
    from warmgate.core.settings import AuthSettings, FunctionConfig

    plugin = register_plugin(PerMinutePlugin(), "undo-per-minute")
    functions = [FunctionConfig(pipeline="echo", model_id="echo-1")]
    _, client = warmgate_server(Settings(functions=functions, auth=AuthSettings(api_keys=["operator"])),
                                pipelines={"echo": EchoPipeline().spec})

    def call(token):
        return client.post("/echo", json={"prompt": "x"}, headers={"Authorization": f"Bearer {token}"})

    assert [call("team-a").headers["x-left"] for _ in range(2)] == ["1", "0"]
    refused = call("team-a")
    assert refused.status_code == 429 and refused.json()["detail"]["msg"] == "two a minute"
    assert (refused.headers["retry-after"], refused.headers["x-left"]) == ("43", "0")
    assert plugin.ended == [0, 0]  # each admitted request ended once (no LLM tokens)
    assert call("team-b").status_code == 200 and call("operator").status_code == 200  # no limits: None
    assert plugin.ended == [0, 0]


class AllowancePlugin:
    """Holds quotes against a fixed allowance; releases or spends them in on_usage."""

    def __init__(self, allowance):
        self.available = allowance
        self.spent = 0

    @warmgate.hookimpl
    def reserve(self, quote, app):
        if quote.wei > self.available:
            raise warmgate.core.http.errors.PaymentRequired(f"{self.available} wei left, {quote.wei} asked")
        self.available -= quote.wei

    @warmgate.hookimpl
    def on_usage(self, event, app):
        self.available += event.quoted_wei - event.wei
        self.spent += event.wei


def test_hook_reserve(register_plugin, warmgate_server):
    from warmgate.core.settings import FunctionConfig, Price
    from warmgate.plugins.pricing.settings import PricingSettings

    plugin = register_plugin(AllowancePlugin(10), "undo-allowance")
    functions = [FunctionConfig(pipeline="echo", model_id="echo-1", price=Price(price_per_unit=1))]
    _, client = warmgate_server(Settings(functions=functions, sections=[PricingSettings(ledger="off")]),
                                pipelines={"echo": EchoPipeline().spec})
    assert client.post("/echo", json={"prompt": "abcd"}).status_code == 200
    assert client.post("/echo", json={"prompt": "abcd", "fail": True}).status_code == 500  # released, not spent
    refused = client.post("/echo", json={"prompt": "abcdefg"})
    assert refused.status_code == 402 and refused.json()["detail"]["msg"] == "6 wei left, 7 asked"
    assert (plugin.available, plugin.spent) == (6, 4)


class AnsweringPlugin:
    """A hold that waits (as a database round trip does) and refuses quotes over 5 units; the
    order of the hooks each request reaches."""

    def __init__(self):
        self.calls = []

    @warmgate.hookimpl
    def reserve(self, quote, app):
        async def hold():
            await asyncio.sleep(0)
            if quote.units > 5:
                raise warmgate.core.http.errors.PaymentRequired(f"{quote.units} units is over 5")
            self.calls.append(("held", quote.request_id))

        return hold()

    @warmgate.hookimpl
    def on_answer(self, quote, app):
        self.calls.append(("answering", quote.request_id))

    @warmgate.hookimpl
    def on_usage(self, event, app):
        self.calls.append(("usage", event.request_id, event.status, event.hold != ""))


def test_hook_on_answer(register_plugin, warmgate_server):
    from warmgate.core.settings import FunctionConfig, Price
    from warmgate.plugins.pricing.settings import PricingSettings

    plugin = register_plugin(AnsweringPlugin(), "undo-answering")
    functions = [FunctionConfig(pipeline="echo", model_id="echo-1", price=Price(price_per_unit=1))]
    _, client = warmgate_server(Settings(functions=functions, sections=[PricingSettings(ledger="off")]),
                                pipelines={"echo": EchoPipeline().spec})

    def call(request_id, **body):
        return client.post("/echo", json={"prompt": "abc", **body}, headers={"X-Request-Id": request_id})

    assert call("ok").status_code == 200
    assert call("words", stream=True).status_code == 200
    assert call("failed", fail=True).status_code == 500  # no answer: never marked answering
    refused = call("refused", prompt="abcdefgh")  # the hold, taken while echo ran, refuses: its result is dropped
    assert refused.status_code == 402 and refused.json()["detail"]["msg"] == "8 units is over 5"
    assert plugin.calls == [("held", "ok"), ("answering", "ok"), ("usage", "ok", 200, True),
                            ("held", "words"), ("answering", "words"), ("usage", "words", 200, True),
                            ("held", "failed"), ("usage", "failed", 500, True)]  # "refused": held nothing, no usage


class HealthPlugin:
    state = None

    @warmgate.hookimpl
    def health(self, app):
        return self.state


def test_hook_health(register_plugin, warmgate_server):
    plugin = register_plugin(HealthPlugin(), "undo-health")
    _, client = warmgate_server(Settings(), pipelines={"echo": EchoPipeline().spec})
    assert client.get("/health").json() == {"status": "IDLE"}
    for state in ("OK", "ERROR", "LOADING"):
        plugin.state = state
        assert client.get("/health").json() == {"status": state}


class LivePlugin:
    made = []

    @warmgate.hookimpl
    def register_live_pipelines(self, register):
        def factory(**options):
            LivePlugin.made.append(options)
            return warmgate.FrameProcessor()

        register("throwaway-live", factory)


def test_hook_register_live_pipelines(register_plugin, warmgate_server):
    from warmgate.plugins.live.pipelines import get_live_pipelines
    from warmgate.plugins.live.settings import LiveSettings

    register_plugin(LivePlugin(), "undo-live")
    assert get_live_pipelines()["throwaway-live"].plugin == "undo-live"
    settings = Settings(sections=[LiveSettings(pipelines={"throwaway-live": {"strength": 0.5}})])
    _, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})
    r = client.post("/live/sessions", json={"model_id": "throwaway-live"})
    assert r.status_code == 200 and r.json()["pipeline"] == "throwaway-live"
    assert LivePlugin.made == [{"strength": 0.5}]
    assert client.delete(f"/live/sessions/{r.json()['id']}").json()["state"] == "OFFLINE"


class ShoutingExecutor(warmgate.BaseExecutor):
    """A third-party executor: answers the echo pipeline itself, in capitals, and counts stops."""

    stopped = 0

    @classmethod
    def check_config(cls, config):
        return ("options.volume", "volume must be loud") if config.options.get("volume") == "quiet" else None

    async def start(self):
        return self.config.model_id  # the "runner" this function holds while loaded

    async def call(self, runner, call):
        return {"text": call.body.prompt.upper(), "model_id": runner}

    async def stop(self, runner):
        ShoutingExecutor.stopped += 1


class ExecutorPlugin:
    @warmgate.hookimpl
    def register_executors(self, register):
        register("shouting", ShoutingExecutor)


def test_hook_register_executors(register_plugin, warmgate_server):
    from warmgate.core.executors import get_executors

    register_plugin(ExecutorPlugin(), "undo-executors")
    assert {"local", "remote", "ray", "shouting"} <= set(get_executors())
    functions = [warmgate.FunctionConfig(pipeline="echo", model_id="loud-1", executor="shouting",
                                         scaling=Scaling(idle_timeout=0.1))]
    _, client = warmgate_server(Settings(functions=functions), pipelines={"echo": EchoPipeline().spec})
    assert client.post("/echo", json={"prompt": "hi there"}).json() == {"text": "HI THERE", "model_id": "loud-1"}
    (fn,) = client.get("/functions").json()["functions"]
    assert fn["executor"] == "shouting" and fn["requests"] == 1
    # idle past its timeout, the function scales to zero through the executor's stop
    assert wait_for(lambda: client.get("/functions").json()["functions"][0]["state"] == "cold")
    assert ShoutingExecutor.stopped == 1


def test_an_executor_refuses_settings_and_an_unknown_one_is_a_config_error(register_plugin):
    from warmgate.core.config import plan_functions

    register_plugin(ExecutorPlugin(), "undo-executors")
    pipelines = {"echo": EchoPipeline().spec}
    quiet = warmgate.FunctionConfig(pipeline="echo", model_id="e", executor="shouting", options={"volume": "quiet"})
    with pytest.raises(warmgate.ConfigError, match=r"functions\[0\].options.volume: volume must be loud"):
        plan_functions(Settings(functions=[quiet]), pipelines)
    unknown = warmgate.FunctionConfig(pipeline="echo", model_id="e", executor="nowhere")
    with pytest.raises(warmgate.ConfigError, match=r"functions\[0\].executor: unknown executor 'nowhere'; "
                                                   r"installed: local, remote, ray, shouting"):
        plan_functions(Settings(functions=[unknown]), pipelines)


def test_an_executor_name_registered_twice_names_both_plugins(register_plugin):
    from warmgate.core.executors import get_executors

    class LocalAgain:
        @warmgate.hookimpl
        def register_executors(self, register):
            register("local", ShoutingExecutor)

    register_plugin(LocalAgain(), "undo-local-again")
    with pytest.raises(ValueError, match="executor 'local' is registered by both 'warmgate' and 'undo-local-again'"):
        get_executors()


def test_docs_name_only_the_public_api():
    """docs/plugins.md sends authors to ``warmgate``'s public names (and the ``warmgate.testing``
    kit), never into internals; the built-in plugins are named by their modules."""
    from warmgate.core.plugins import DEFAULT_PLUGINS

    docs = (ROOT / "docs" / "plugins.md").read_text()
    imported = re.findall(r"^\s*from (warmgate[\w.]*) import ([\w, ]+)", docs, re.MULTILINE)
    assert imported, "the docs import nothing: the check reads nothing"
    for module, names in imported:
        if module == "warmgate":
            assert {n.strip() for n in names.split(",")} <= set(warmgate.__all__), names
        else:
            assert module.startswith("warmgate.testing"), module
    plugin_modules = {m.removeprefix("warmgate.") for m in DEFAULT_PLUGINS}
    for dotted in re.findall(r"\bwarmgate\.((?:\w+\.)*\w+)", docs):
        first = dotted.split(".")[0]
        assert first in warmgate.__all__ or first == "testing" or dotted in plugin_modules, f"warmgate.{dotted}"


def test_the_smallest_third_party_pipeline_is_at_most_30_lines():
    source = (ROOT / "tests" / "fixtures" / "warmgate-shout" / "warmgate_shout.py").read_text()
    code = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith(('"""', "#"))]
    assert len(code) <= 30


def test_spec_base_shares_fields_and_names_the_operation():
    base = warmgate.IMAGE_INPUT.extend(response=EchoRequest, engine_modules=("torch",))
    spec = base.spec(name="image-to-echo", request=EchoRequest, load=lambda model_id, options: None)
    assert (spec.encoding, spec.price_unit, spec.engine_modules) == ("multipart", warmgate.PriceUnit.PIXEL, ("torch",))
    assert (spec.summary, spec.operation_id) == ("Image To Echo", "genImageToEcho")
    assert base.spec(name="x", request=EchoRequest, load=print, summary="Mine").operation_id == "genMine"
    with pytest.raises(TypeError, match="colour not PipelineSpec fields"):
        warmgate.SpecBase(colour="red")


class ShoutSettings(warmgate.SettingsSection):
    """A plugin's own ``shout:`` section, with an environment override and a check."""

    key: ClassVar[str] = "shout"
    volume: int = 1

    def with_env(self, env):
        value = env.get("WARMGATE_SHOUT_VOLUME")
        return msgspec.structs.replace(self, volume=int(value)) if value else self

    def check(self, settings):
        return ("shout.volume", "at most 10") if self.volume > 10 else None

    def check_function(self, config):
        louder = config.options.get("shout", 0) > self.volume
        return ("options.shout", "louder than shout.volume") if louder else None


class SettingsPlugin:
    @warmgate.hookimpl
    def register_settings(self, register):
        register(ShoutSettings)


def test_hook_register_settings(register_plugin, tmp_path):
    from warmgate.core.config import load_settings, plan_functions

    register_plugin(SettingsPlugin(), "undo-settings")
    config = tmp_path / "serverless.yaml"
    config.write_text("gateway: {port: 8001}\nshout:\n  volume: 3\n")
    settings = load_settings(config, env={})
    assert settings.section(ShoutSettings).volume == 3
    # a section the file lacks is there at its defaults, with its environment override
    config.write_text("gateway: {port: 8001}\n")
    assert load_settings(config, env={"WARMGATE_SHOUT_VOLUME": "7"}).section(ShoutSettings).volume == 7
    # decoding errors name the line and the field inside the section
    config.write_text("gateway: {port: 8001}\nshout:\n  volume: 3\n  lowdness: 2\n")
    with pytest.raises(warmgate.ConfigError, match=r"line 4, shout.lowdness: unknown field"):
        load_settings(config, env={})
    config.write_text("shout:\n  volume: loud\n")
    with pytest.raises(warmgate.ConfigError, match=r"line 2, shout.volume: Expected `int`, got `str`"):
        load_settings(config, env={})
    # the section's own check runs when the file is read, its function check at start
    config.write_text("shout: {volume: 11}\n")
    with pytest.raises(warmgate.ConfigError, match=r"shout.volume: at most 10"):
        load_settings(config, env={})
    config.write_text("shout: {volume: 2}\nfunctions: [{pipeline: echo, model_id: e, options: {shout: 3}}]\n")
    with pytest.raises(warmgate.ConfigError, match=r"functions\[0\].options.shout: louder than shout.volume"):
        plan_functions(load_settings(config, env={}), {"echo": EchoPipeline().spec})


def test_a_section_no_plugin_declares_is_an_unknown_field_and_a_key_registered_twice_names_both(
        register_plugin, tmp_path):
    from warmgate.core.config import get_settings_sections, load_settings

    config = tmp_path / "serverless.yaml"
    config.write_text("gateway: {port: 8001}\nshout:\n  volume: 3\n")
    with pytest.raises(warmgate.ConfigError, match=r"line \d, shout: unknown field"):
        load_settings(config, env={})

    class PricingAgain:
        @warmgate.hookimpl
        def register_settings(self, register):
            register(type("Pricing2", (warmgate.SettingsSection,), {"__annotations__": {"key": ClassVar[str]},
                                                                     "key": "pricing"}))

    register_plugin(PricingAgain(), "undo-pricing-again")
    with pytest.raises(ValueError, match="settings section 'pricing' is registered by both 'warmgate.plugins.pricing' "
                                         "and 'undo-pricing-again'"):
        get_settings_sections()

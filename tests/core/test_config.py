"""serverless.yaml and aiModels.json: valid files, errors that name file, line and field, env overrides;
routing (runners, strategies, fallbacks), the single url as a list of one runner."""

import dataclasses
import json

import pytest

from warmgate import ConfigError, DemoModel, create_app
from warmgate.core.config import load_settings, plan_functions
from warmgate.testing import EchoPipeline

VALID = """\
gateway:
  port: 9001
  memory_budget: 8GiB
  max_body_size: 10MB
auth:
  api_keys: [k1]
functions:
  - pipeline: echo
    model_id: org/model-a
    warm: true
    max_concurrency: 2
    scaling: {idle_timeout: 60, min_instances: 0}
    resources: {memory: 512MiB, gpu: 1}
    price: {price_per_unit: 4768371, pixels_per_unit: 1, currency: wei}
  - pipeline: echo
    name: echo-b
    options: {dtype: float16}
"""


def _write(tmp_path, text, name="serverless.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_valid_file_is_read_with_sizes_parsed(tmp_path):
    settings = load_settings(_write(tmp_path, VALID), env={})
    assert settings.gateway.port == 9001
    assert settings.gateway.memory_budget == 8 * 2**30
    assert settings.gateway.max_body_size == 10_000_000
    assert settings.auth.api_keys == ["k1"]
    a, b = settings.functions
    assert a.keep_warm and a.max_concurrency == 2 and a.resources.memory == 512 * 2**20
    assert a.price.price_per_unit == 4768371
    assert b.options == {"dtype": "float16"}
    planned = plan_functions(settings, {"echo": EchoPipeline().spec})
    assert [f.name for f in planned] == ["echo:org/model-a", "echo-b"]
    assert planned[1].model_id == "echo-1"  # blank model_id takes the pipeline default


@pytest.mark.parametrize(("text", "location", "expected"), [
    ("functions:\n  - pipeline: echo\n    max_concurrency: lots\n", "line 3, functions[0].max_concurrency", "Expected `int`"),
    ("functions:\n  - pipeline: echo\n    max_concurency: 2\n", "line 3, functions[0].max_concurency", "unknown field"),
    ("functions:\n  - model_id: x\n", "functions[0].pipeline", "required field is missing"),
    ("gateway:\n  port: 70000\n", "line 2, gateway.port", "<= 65535"),
    ("gateway:\n  memory_budget: lots\n", "gateway.memory_budget", "expected a size"),
    ("functions:\n  - pipeline: echo\n    scaling:\n      idle_timeout: -1\n",
     "line 4, functions[0].scaling.idle_timeout", ">= 0"),
])
def test_invalid_fields_name_the_file_line_and_field(tmp_path, text, location, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert message.startswith(str(path))
    assert location in message
    assert expected in message


def test_invalid_yaml_syntax_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(_write(tmp_path, "functions: [\n"), env={})


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml", env={})


def test_duplicate_function_names_are_refused(tmp_path):
    text = "functions:\n  - {pipeline: echo, model_id: a}\n  - {pipeline: echo, model_id: a}\n"
    with pytest.raises(ConfigError, match=r"functions\[1\].*defined twice"):
        load_settings(_write(tmp_path, text), env={})


def test_unknown_pipeline_is_refused_before_start(tmp_path):
    settings = load_settings(_write(tmp_path, "functions:\n  - pipeline: text-to-nothing\n"), env={})
    with pytest.raises(ConfigError, match=r"functions\[0\].pipeline.*unknown pipeline 'text-to-nothing'.*echo"):
        create_app(settings, pipelines={"echo": EchoPipeline().spec})


def test_ai_models_json_is_translated(tmp_path):
    entries = [
        {"pipeline": "echo", "model_id": "org/a", "warm": True, "capacity": 3, "price_per_unit": 4768371,
         "pixels_per_unit": 2, "currency": "USD", "optimization_flags": {"SFAST": True}},
        {"pipeline": "echo", "model_id": "org/b", "url": "http://127.0.0.1:9", "token": "secret"},
    ]
    settings = load_settings(_write(tmp_path, json.dumps(entries), "aiModels.json"), env={})
    a, b = settings.functions
    assert (a.pipeline, a.model_id, a.warm, a.max_concurrency) == ("echo", "org/a", True, 3)
    assert (a.price.price_per_unit, a.price.pixels_per_unit, a.price.currency) == (4768371, 2, "USD")
    assert a.options == {"SFAST": True}
    assert (b.executor, b.url, b.token) == ("remote", "http://127.0.0.1:9", "secret")


def test_ai_models_json_errors_name_the_entry(tmp_path):
    path = _write(tmp_path, json.dumps([{"pipeline": "echo", "model_id": "a"}, {"pipeline": "echo"}]), "aiModels.json")
    with pytest.raises(ConfigError, match=r"aiModels.json: \[1\].model_id: expected a non-empty string"):
        load_settings(path, env={})
    path = _write(tmp_path, json.dumps([{"pipeline": "echo", "model_id": "a", "gpu": 1}]), "aiModels.json")
    with pytest.raises(ConfigError, match=r"\[0\].gpu: unknown aiModels.json field"):
        load_settings(path, env={})


def test_environment_overrides_gateway_settings_and_keys(tmp_path):
    env = {"WARMGATE_PORT": "9100", "WARMGATE_MEMORY_BUDGET": "1GiB", "WARMGATE_ACCESS_LOG": "false",
           "WARMGATE_API_KEYS": "a, b"}
    settings = load_settings(_write(tmp_path, VALID), env=env)
    assert settings.gateway.port == 9100
    assert settings.gateway.memory_budget == 2**30
    assert settings.gateway.access_log is False
    assert settings.auth.api_keys == ["a", "b"]


def test_bad_environment_value_names_the_variable_field(tmp_path):
    with pytest.raises(ConfigError, match=r"environment \(WARMGATE_\*\): port"):
        load_settings(None, env={"WARMGATE_PORT": "eighty"})


def test_config_path_from_environment_and_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, env={}).source == "<built-in defaults>"
    path = _write(tmp_path, VALID, "other.yaml")
    assert load_settings(None, env={"WARMGATE_CONFIG": str(path)}).gateway.port == 9001
    _write(tmp_path, "gateway: {port: 9200}\n")
    assert load_settings(None, env={}).gateway.port == 9200  # ./serverless.yaml is picked up


def test_demo_profile_plans_tiny_models_for_pipelines_that_have_one():
    settings = load_settings(None, profile="demo", env={})
    [fn] = plan_functions(settings, {"echo": EchoPipeline().spec})
    assert fn.demo and fn.model_id == "warmgate-demo/echo"


def test_a_pipeline_with_several_demo_models_gets_a_function_for_each_in_order():
    spec = EchoPipeline().spec
    second = DemoModel(model_id="warmgate-demo/echo-2", build=spec.demo.build)
    several = dataclasses.replace(spec, demo=None, demos=(spec.demo, second))
    assert several.demo is spec.demo and several.demo_model("warmgate-demo/echo-2") is second
    assert several.demo_model("warmgate-demo/other") is None
    planned = plan_functions(load_settings(None, profile="demo", env={}), {"echo": several})
    assert [(fn.name, fn.demo) for fn in planned] == [("echo:warmgate-demo/echo", True),
                                                      ("echo:warmgate-demo/echo-2", True)]
    with pytest.raises(ValueError, match="demo model ids must differ"):
        dataclasses.replace(spec, demo=None, demos=(second, second))
    with pytest.raises(ValueError, match="give demo or demos, not both"):
        dataclasses.replace(spec, demo=second, demos=(spec.demo,))


@pytest.mark.parametrize(("function", "expected"), [
    ("{pipeline: echo, executor: remote}", r"functions\[0\].url: executor 'remote' needs the runner's url"),
    ("{pipeline: echo, executor: remote, url: 'runner:8000'}", r"needs the runner's url \(http://host:port\)"),
    ("{pipeline: echo, url: 'http://runner:8000'}", r"functions\[0\].url: url is only used with executor: remote"),
])
def test_remote_functions_need_a_url_and_only_they_take_one(tmp_path, function, expected):
    settings = load_settings(_write(tmp_path, f"functions:\n  - {function}\n"), env={})
    with pytest.raises(ConfigError, match=expected):
        plan_functions(settings, {"echo": EchoPipeline().spec})


def test_fiat_prices_need_an_eth_rate(tmp_path):
    text = "functions:\n  - pipeline: echo\n    price: {price_per_unit: 0.002, currency: USD}\n"
    settings = load_settings(_write(tmp_path, text), env={})
    with pytest.raises(ConfigError, match=r"functions\[0\].price.currency: USD needs its ETH rate"):
        plan_functions(settings, {"echo": EchoPipeline().spec})
    settings = load_settings(_write(tmp_path, "pricing: {eth_rates: {usd: 4000}}\n" + text), env={})
    assert plan_functions(settings, {"echo": EchoPipeline().spec})[0].price.currency == "USD"


@pytest.mark.parametrize(("price", "expected"), [
    ("{price_per_unit: -1}", "price_per_unit`"), ("{price_per_unit: lots}", "price_per_unit`"),
    ("{price_per_unit: 1, currency: dollars}", "currency`"), ("{price_per_unit: 1, pixels_per_unit: 0}", ">= 1"),
])
def test_bad_prices_are_config_errors(tmp_path, price, expected):
    with pytest.raises(ConfigError, match=r"functions\[0\]\.price"):
        load_settings(_write(tmp_path, f"functions:\n  - pipeline: echo\n    price: {price}\n"), env={})


def test_the_repository_serverless_yaml_describes_every_pipeline_priced():
    from pathlib import Path

    from warmgate.core.plugins import get_pipelines

    root = Path(__file__).resolve().parents[2]
    settings = load_settings(root / "serverless.yaml", env={})
    pipelines = get_pipelines()
    planned = plan_functions(settings, pipelines)
    hosts = {name for name, spec in pipelines.items() if not spec.serves}
    assert sorted(fn.pipeline for fn in planned) == sorted(hosts)  # one function each, none filled in by default
    assert all(fn.price is not None and fn.model_id == pipelines[fn.pipeline].default_model_id for fn in planned)
    demo = plan_functions(load_settings(root / "serverless.yaml", profile="demo", env={}), pipelines)
    assert demo and all(fn.demo for fn in demo)  # the quickstart's demo ignores the GPU functions

ROUTED = """\
functions:
  - pipeline: echo
    model_id: echo-1
    executor: remote
    runners:
      - {url: "http://gpu-a:8000", token: a-secret, weight: 2}
      - {url: "http://gpu-b:8000", price: {price_per_unit: 150}, max_concurrency: 4}
    routing: {strategy: least-busy, retries: 1, cooldown: 10, health_interval: 2}
    fallbacks: [backup]
  - pipeline: echo
    model_id: echo-2
    name: backup
"""


def test_runners_routing_and_fallbacks_are_read(tmp_path):
    settings = load_settings(_write(tmp_path, ROUTED), env={})
    routed, backup = plan_functions(settings, {"echo": EchoPipeline().spec})
    a, b = routed.runner_list
    assert (a.url, a.token, a.weight, a.price) == ("http://gpu-a:8000", "a-secret", 2, None)
    assert (b.price.price_per_unit, b.max_concurrency) == (150, 4)
    assert (a.max_concurrency, routed.max_concurrency) == (1, 5)  # the function admits its runners' sum
    assert (routed.routing.strategy, routed.routing.retries, routed.routing.cooldown) == ("least-busy", 1, 10)
    assert routed.routing.cooldown_failures == 3  # the default
    assert routed.fallbacks == ["backup"] and backup.runner_list == []


def test_the_single_url_is_a_list_of_one_runner(tmp_path):
    text = "functions:\n  - {pipeline: echo, executor: remote, url: 'http://gpu-a:8000', token: t}\n"
    [fn] = plan_functions(load_settings(_write(tmp_path, text), env={}), {"echo": EchoPipeline().spec})
    [runner] = fn.runner_list
    assert (runner.url, runner.token) == ("http://gpu-a:8000", "t")
    assert fn.routing.strategy == "warm-first"


FUNCTION = "functions:\n  - pipeline: echo\n    executor: remote\n"


@pytest.mark.parametrize(("text", "location", "expected"), [
    (FUNCTION + "    runners: []\n", "line 4, functions[0].runners", "list at least one runner"),
    (FUNCTION + "    runners:\n      - {url: 'http://a:1'}\n      - {url: 'http://a:1/'}\n",
     "line 6, functions[0].runners[1].url", "http://a:1 is listed twice"),
    (FUNCTION + "    runners: [{url: 'http://a:1'}]\n    routing: {strategy: fastest}\n",
     "line 5, functions[0].routing.strategy", "Invalid enum value 'fastest'"),
    (FUNCTION + "    runners: [{url: 'http://a:1'}]\n    fallbacks: [nowhere]\n",
     "line 5, functions[0].fallbacks[0]", "fallback 'nowhere' names no echo function"),
    (FUNCTION + "    url: 'http://a:1'\n    runners: [{url: 'http://b:1'}]\n",
     "line 4, functions[0].url", "not both"),
    (FUNCTION + "    runners: [{url: 'http://a:1', weight: 0}]\n",
     "line 4, functions[0].runners[0].weight", ">= 1"),
    (FUNCTION + "    runners: [{url: 'http://a:1', executor: local}]\n",
     "line 4, functions[0].runners[0]", "a url or an executor (local, ray), one of them"),
    (FUNCTION + "    runners: [{executor: local}, {executor: local}]\n",
     "line 4, functions[0].runners[1].executor", "local is listed twice"),
])
def test_bad_routing_is_refused_with_its_line_and_field(tmp_path, text, location, expected):
    with pytest.raises(ConfigError) as refused:
        load_settings(_write(tmp_path, text), env={})
    assert refused.value.location == location and expected in refused.value.expected, str(refused.value)


def test_a_fallback_cycle_is_refused_with_its_path(tmp_path):
    text = ("functions:\n"
            "  - {pipeline: echo, name: a, fallbacks: [b]}\n"
            "  - {pipeline: echo, name: b, fallbacks: [c]}\n"
            "  - {pipeline: echo, name: c, fallbacks: [a]}\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(_write(tmp_path, text), env={})
    assert refused.value.location == "line 2, functions[0].fallbacks"
    assert refused.value.expected == "fallbacks go round in a cycle: a -> b -> c -> a"


def test_a_bad_runner_url_names_the_runner():
    from warmgate import FunctionConfig, Settings
    from warmgate.core.settings import RunnerConfig

    fn = FunctionConfig(pipeline="echo", executor="remote", runners=[RunnerConfig(url="http://a:1"),
                                                                      RunnerConfig(url="gpu-b:8000")])
    with pytest.raises(ConfigError, match=r"functions\[0\].runners\[1\].url: .*got 'gpu-b:8000'"):
        plan_functions(Settings(functions=[fn]), {"echo": EchoPipeline().spec})
    local = FunctionConfig(pipeline="echo", runners=[RunnerConfig(url="http://a:1")])
    with pytest.raises(ConfigError, match=r"functions\[0\].runners: runners are only used with executor: remote"):
        plan_functions(Settings(functions=[local]), {"echo": EchoPipeline().spec})


def test_ai_models_entries_sharing_a_model_become_one_function_with_runners(tmp_path):
    entries = [
        {"pipeline": "echo", "model_id": "org/a", "url": "http://gpu-a:8000", "token": "ta", "capacity": 2,
         "price_per_unit": 100},
        {"pipeline": "echo", "model_id": "org/b", "warm": True},
        {"pipeline": "echo", "model_id": "org/a", "url": "http://gpu-b:8000", "capacity": 3, "warm": True},
    ]
    settings = load_settings(_write(tmp_path, json.dumps(entries), "aiModels.json"), env={})
    a, b = settings.functions
    assert (a.model_id, a.executor, a.warm, a.max_concurrency) == ("org/a", "remote", True, 5)
    assert [(r.url, r.token, r.max_concurrency) for r in a.runner_list] == [
        ("http://gpu-a:8000", "ta", 2), ("http://gpu-b:8000", "", 3)]
    assert a.runner_list[0].price.price_per_unit == 100 and a.runner_list[1].price is None
    assert (b.model_id, b.executor) == ("org/b", "local")


def test_ai_models_entries_sharing_a_model_all_need_a_url(tmp_path):
    entries = [{"pipeline": "echo", "model_id": "org/a", "url": "http://gpu-a:8000"},
               {"pipeline": "echo", "model_id": "org/a"}]
    with pytest.raises(ConfigError, match=r"aiModels.json: \[1\].url: entries \[0, 1\] share pipeline and model_id"):
        load_settings(_write(tmp_path, json.dumps(entries), "aiModels.json"), env={})


def test_a_runner_priced_in_fiat_needs_an_eth_rate(tmp_path):
    text = FUNCTION + ("    runners:\n      - {url: 'http://a:1'}\n"
                       "      - {url: 'http://b:1', price: {price_per_unit: 1, currency: USD}}\n")
    with pytest.raises(ConfigError, match=r"functions\[0\].runners\[1\].price.currency: USD needs its ETH rate"):
        plan_functions(load_settings(_write(tmp_path, text), env={}), {"echo": EchoPipeline().spec})

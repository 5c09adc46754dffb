"""Routing in serverless.yaml and aiModels.json: runners, strategies and fallbacks are read, the
single ``url`` is a list of one, and bad routing is refused at start with its line and field."""

import json

import pytest

from warmgate import ConfigError
from warmgate.core.config import load_settings, plan_functions
from warmgate.testing import EchoPipeline

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


def _write(tmp_path, text, name="serverless.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_runners_routing_and_fallbacks_are_read(tmp_path):
    settings = load_settings(_write(tmp_path, ROUTED), env={})
    routed, backup = plan_functions(settings, {"echo": EchoPipeline().spec})
    a, b = routed.runner_list
    assert (a.url, a.token, a.weight, a.price) == ("http://gpu-a:8000", "a-secret", 2, None)
    assert (b.price.price_per_unit, b.max_concurrency) == (150, 4)
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

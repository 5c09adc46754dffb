"""API keys with budgets: made with `warmgate keys`, required with `auth.keys`, each request's
quote held against the key's balance and settled when it ends (402 when short, released when the
inference fails), the key's usage and balance at GET /usage."""

import json

import pytest
from click.testing import CliRunner

from warmgate import FunctionConfig, Settings
from warmgate.core.cli import cli
from warmgate.core.plugins import load_plugins, pm
from warmgate.core.settings import AuthSettings, Price
from warmgate.plugins.pricing.keys import KeyStore, parse_amount
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import EchoPipeline, wait_for

PAID = FunctionConfig(pipeline="echo", model_id="echo-paid", aliases=["paid"], price=Price(price_per_unit=1))
OTHER = FunctionConfig(pipeline="echo", model_id="echo-other", aliases=["other"], price=Price(price_per_unit=1))


@pytest.fixture
def store(pricing_database):
    keys = KeyStore(pricing_database.target)
    yield keys
    keys.close()


@pytest.fixture
def keyed(warmgate_server, pricing_database):
    """A gateway that requires keys, with one operator key, on each store."""
    settings = Settings(functions=[PAID, OTHER], auth=AuthSettings(keys=True, api_keys=["operator"]),
                        sections=[PricingSettings(**pricing_database.pricing())])
    return warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})[1]


def call(client, token, prompt="abcd", model="paid", **fields):
    return client.post("/echo", json={"prompt": prompt, "model_id": model, **fields},
                       headers={"Authorization": f"Bearer {token}"} if token else {})


def usage(client, token, **params):
    r = client.get("/usage", params=params, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_key_is_required_and_its_requests_are_billed_to_it(keyed, store):
    record, token = store.create(name="alice")
    assert call(keyed, None).status_code == 401
    assert call(keyed, "wg-not-a-key").status_code == 401
    r = call(keyed, token, "abc")
    assert r.status_code == 200 and r.headers["x-warmgate-price"] == "3"
    report = usage(keyed, token)
    assert [(t["key"], t["function"], t["wei"]) for t in report["usage"]] == [(record.id, "echo:echo-paid", "3")]
    assert report["balance"]["credit_wei"] is None and report["balance"]["spent_wei"] == "3"  # no budget: metered


def test_a_short_balance_is_402_with_the_balance_and_the_price(keyed, store):
    record, token = store.create(credit=10)
    assert call(keyed, token, "abcd").status_code == 200
    refused = call(keyed, token, "abcdefg")
    assert refused.status_code == 402
    msg = refused.json()["detail"]["msg"]
    assert f"key {record.id} has 6 wei available" in msg and "costs 7 wei" in msg
    assert call(keyed, token, "abcdef").status_code == 200  # exactly the rest
    assert usage(keyed, token)["balance"] == {"key": record.id, "name": "", "credit_wei": "10", "spent_wei": "10",
                                              "held_wei": "0", "available_wei": "0"}
    assert store.get(record.id).balance == 0  # committed with the usage rows


def test_a_failed_inference_releases_its_hold(keyed, store):
    _, token = store.create(credit=5)
    assert call(keyed, token, "abcde", fail=True).status_code == 500
    assert call(keyed, token, "abcde").status_code == 200  # the whole balance was still there
    assert usage(keyed, token)["balance"]["available_wei"] == "0"


def test_a_key_may_be_limited_to_some_functions(keyed, store):
    _, token = store.create(functions=["paid"])
    assert call(keyed, token, model="paid").status_code == 200
    refused = call(keyed, token, model="other")
    assert refused.status_code == 403 and "may call: paid" in refused.json()["detail"]["msg"]


def test_topup_and_revoke_reach_a_running_gateway(keyed, store):
    record, token = store.create(credit=3)
    assert call(keyed, token, "abc").status_code == 200
    assert call(keyed, token, "abc").status_code == 402
    store.top_up(record.id, 3)
    assert wait_for(lambda: call(keyed, token, "abc").status_code == 200, timeout=5)
    store.revoke(record.id)
    assert wait_for(lambda: call(keyed, token, "x").status_code == 401, timeout=5)
    assert "was revoked" in call(keyed, token, "x").json()["detail"]["msg"]


def test_a_key_reads_only_its_own_usage_and_the_operator_reads_all(keyed, store):
    alice, alice_token = store.create(name="alice")
    bob, bob_token = store.create(name="bob")
    call(keyed, alice_token, "ab")
    call(keyed, bob_token, "abc")
    assert [t["key"] for t in usage(keyed, alice_token)["usage"]] == [alice.id]
    r = keyed.get("/usage", params={"key": bob.id}, headers={"Authorization": f"Bearer {alice_token}"})
    assert r.status_code == 403
    everyone = usage(keyed, "operator")
    assert sorted(t["key"] for t in everyone["usage"]) == sorted([alice.id, bob.id]) and everyone["balance"] is None
    assert keyed.get("/usage").status_code == 401


def test_operator_keys_still_work_and_are_not_budgeted(keyed):
    assert call(keyed, "operator", "a" * 50).status_code == 200


def test_keys_need_the_ledger(tmp_path):
    from warmgate.core.config import load_settings
    from warmgate.core.http.errors import ConfigError

    config = tmp_path / "serverless.yaml"
    config.write_text("auth: {keys: true}\npricing: {ledger: 'off'}\n")
    with pytest.raises(ConfigError, match=r"serverless.yaml: auth.keys: keys are kept in the usage ledger"):
        load_settings(config, env={})


# -- amounts and the CLI ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "wei"), [("1000", 1000), ("0.5eth", 5 * 10**17), ("2 ETH", 2 * 10**18),
                                           ("3usd", 10**15), ("0.000000000000000001eth", 1), ("1.5", 1)])
def test_amounts_are_wei_eth_or_fiat_rounded_down(text, wei):
    assert parse_amount(text, {"USD": 3000}) == wei


@pytest.mark.parametrize("text", ["", "-5", "1e18", "five", "3 EUR"])
def test_bad_amounts_say_what_is_expected(text):
    with pytest.raises(ValueError, match="expected an amount|no ETH rate for EUR"):
        parse_amount(text, {"USD": 3000})


@pytest.fixture
def keys_cli(tmp_path, pricing_database):
    config = tmp_path / "serverless.yaml"
    config.write_text(json.dumps({"pricing": pricing_database.pricing(eth_rates={"USD": 2000})}))
    load_plugins()  # as `warmgate` does before it adds the plugins' commands
    pm.hook.register_commands(cli=cli)

    def run(*args, ok=True):
        result = CliRunner().invoke(cli, ["keys", *args, "--config", str(config)])
        assert (result.exit_code == 0) is ok, result.output
        return result.output

    return run


def test_the_keys_command_creates_lists_tops_up_and_revokes(keys_cli, store):
    made = json.loads(keys_cli("create", "--name", "ci", "--balance", "1usd", "--function", "text-to-image", "--json"))
    assert made["token"].startswith("wg-") and made["credit"] == 5 * 10**14 and made["functions"] == ["text-to-image"]
    assert store.find(__import__("hashlib").sha256(made["token"].encode()).hexdigest()).id == made["id"]
    assert "unlimited" in keys_cli("create", "--name", "free")
    assert keys_cli("topup", made["id"], "0.001eth") == f"{made['id']}: balance {5 * 10**14 + 10**15}\n"
    assert "revoked " + made["id"] in keys_cli("revoke", made["id"])
    listed = {k["name"]: k for k in json.loads(keys_cli("list", "--json"))}
    assert listed["ci"]["revoked"] is not None and listed["free"]["balance"] is None
    table = keys_cli("list")
    assert "revoked" in table and "active" in table and "unlimited" in table


def test_the_keys_command_refuses_bad_input_clearly(keys_cli):
    assert "expected an amount" in keys_cli("create", "--balance", "lots", ok=False)
    assert "no key 'key_nope'" in keys_cli("topup", "key_nope", "5", ok=False)
    free = json.loads(keys_cli("create", "--json"))
    assert "has no budget" in keys_cli("topup", free["id"], "5", ok=False)
    assert "no key" in keys_cli("revoke", "key_nope", ok=False)


@pytest.fixture
def demo_keys(tmp_path, warmgate_server):
    """The demo gateway with keys on, and `warmgate keys` run on the same configuration."""
    from warmgate.core.config import load_settings

    config = tmp_path / "serverless.yaml"
    config.write_text(json.dumps({"auth": {"keys": True}, "pricing": {"ledger": str(tmp_path / "usage.sqlite")}}))
    load_plugins()  # as `warmgate` does before it adds the plugins' commands
    pm.hook.register_commands(cli=cli)

    def keys(*args, ok=True):
        result = CliRunner().invoke(cli, ["keys", *args, "--config", str(config), "--profile", "demo"])
        assert (result.exit_code == 0) is ok, result.output
        return result.output

    _, client = warmgate_server(load_settings(config, profile="demo", env={}))
    return keys, client


def test_a_pipeline_name_allows_every_function_of_that_pipeline(demo_keys):
    keys, client = demo_keys
    made = json.loads(keys("create", "--function", "text-to-speech", "--function", "live-video-to-video", "--json"))
    assert made["matches"] == {"text-to-speech": ["text-to-speech:warmgate-demo/tiny-vits"],
                               "live-video-to-video": ["live-video-to-video:diffusion", "live-video-to-video:noop"]}
    other = json.loads(keys("create", "--function", "image-to-text", "--json"))
    speech = {"text": "hello there", "model_id": "warmgate-demo/tiny-vits"}
    spoken = client.post("/text-to-speech", json=speech, headers={"Authorization": f"Bearer {made['token']}"})
    assert spoken.status_code == 200, spoken.text
    refused = client.post("/text-to-speech", json=speech, headers={"Authorization": f"Bearer {other['token']}"})
    assert refused.status_code == 403 and "may call: image-to-text" in refused.json()["detail"]["msg"]
    live = client.post("/live/sessions", json={"model_id": "noop", "params": {"width": 384, "height": 384}},
                       headers={"Authorization": f"Bearer {made['token']}"})
    assert live.status_code == 200, live.text
    client.delete(f"/live/sessions/{live.json()['id']}", headers={"Authorization": f"Bearer {made['token']}"})
    table = keys("list")
    assert "text-to-speech = text-to-speech:warmgate-demo/tiny-vits" in table
    assert "image-to-text = image-to-text:warmgate-demo/tiny-blip" in table


def test_keys_create_refuses_a_name_that_matches_nothing_and_names_the_candidates(demo_keys):
    keys, _ = demo_keys
    refused = keys("create", "--function", "text-to-speach", ok=False)
    assert "--function 'text-to-speach' matches no function in" in refused
    assert "did you mean: text-to-speech" in refused
    assert "no keys" in keys("list")

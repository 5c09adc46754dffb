"""Bearer tokens: off by default; when on, every generate route needs one and says so."""

import pytest

from warmgate import Settings
from warmgate.core.http.auth import BearerAuth
from warmgate.core.settings import AuthSettings
from warmgate.testing import EchoPipeline


def test_auth_off_by_default(warmgate_server):
    _, client = warmgate_server(Settings(), pipelines={"echo": EchoPipeline().spec})
    assert client.post("/echo", json={"prompt": "x"}).status_code == 200


@pytest.fixture
def client(warmgate_server):
    settings = Settings(auth=AuthSettings(api_keys=["alpha", "beta"]))
    return warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})[1]


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic YWxwaGE=", "Bearer", "alpha", "Bearer alphax"])
def test_missing_or_wrong_token_is_401_with_www_authenticate(client, header):
    headers = {"Authorization": header} if header is not None else {}
    r = client.post("/echo", json={"prompt": "x"}, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in r.json()["detail"]["msg"].lower()


@pytest.mark.parametrize("key", ["alpha", "beta"])
def test_any_configured_key_is_accepted(client, key):
    r = client.post("/echo/", json={"prompt": "x"}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200


def test_auth_is_checked_before_the_body_is_validated(client):
    r = client.post("/echo", content=b"{not json")
    assert r.status_code == 401


def test_runner_surface_stays_open(client):
    for path in ("/health", "/version", "/hardware/info", "/hardware/stats", "/functions", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_scheme_is_case_insensitive():
    BearerAuth(["k"]).check("bearer k")

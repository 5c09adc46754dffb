"""A prompt that overflows an LLM function's context goes to its fallback, a model with a
longer one, and the response names it; without a fallback it is a 422 naming the field."""

import httpx

from warmgate import FunctionConfig, Settings

ASK = {"messages": [{"role": "user", "content": "tell me a long story"}], "max_tokens": 100}


def test_an_overflowing_prompt_is_served_by_the_fallback_with_the_longer_context(warmgate_server, tiny_chat):
    short = FunctionConfig(pipeline="llm", model_id=tiny_chat, name="short", aliases=["short"],
                           options={"max_model_len": 64}, fallbacks=["long"])
    long = FunctionConfig(pipeline="llm", model_id=tiny_chat, name="long", aliases=["long"])
    _, client = warmgate_server(Settings(functions=[short, long]))
    client.timeout = httpx.Timeout(120)

    r = client.post("/v1/chat/completions", json={**ASK, "model": "short"})
    assert r.status_code == 200, r.text
    assert r.headers["x-warmgate-function"] == "long"

    fits = client.post("/v1/chat/completions", json={**ASK, "model": "short", "max_tokens": 4})
    assert fits.status_code == 200 and fits.headers["x-warmgate-function"] == "short"

    too_long = client.post("/v1/chat/completions", json={**ASK, "model": "long", "max_tokens": 5000})
    assert too_long.status_code == 422, too_long.text
    assert "exceeds the model's context of 4096 tokens" in too_long.text


def test_a_remote_runner_whose_context_overflows_falls_back_too(warmgate_server, tiny_chat):
    """The runner (another warmgate) answers 422 with ``X-Warmgate-Context-Exceeded``; the gateway
    in front takes that as the function's overflow and serves the prompt on its fallback."""
    short = FunctionConfig(pipeline="llm", model_id=tiny_chat, name="short",  # the names the gateway forwards
                           aliases=["short", "short-remote", "alone"], options={"max_model_len": 64})
    runner, runner_client = warmgate_server(Settings(functions=[short]))
    runner_client.timeout = httpx.Timeout(120)
    overflow = runner_client.post("/v1/chat/completions", json={**ASK, "model": "short"})
    assert overflow.status_code == 422 and overflow.headers["x-warmgate-context-exceeded"] == "true"

    remote = FunctionConfig(pipeline="llm", model_id=tiny_chat, name="short-remote", aliases=["short-remote"],
                            executor="remote", url=runner.url, fallbacks=["long"])
    long = FunctionConfig(pipeline="llm", model_id=tiny_chat, name="long", aliases=["long"])
    _, client = warmgate_server(Settings(functions=[remote, long]))
    client.timeout = httpx.Timeout(120)
    r = client.post("/v1/chat/completions", json={**ASK, "model": "short-remote"})
    assert r.status_code == 200, r.text
    assert r.headers["x-warmgate-function"] == "long"
    fits = client.post("/v1/chat/completions", json={**ASK, "model": "short-remote", "max_tokens": 4})
    assert fits.status_code == 200 and fits.headers["x-warmgate-function"] == "short-remote"
    # the runner's overflow is the caller's mistake, never a runner failure
    (info,) = [f for f in client.get("/functions").json()["functions"] if f["name"] == "short-remote"]
    assert [r["failures"] for r in info["runners"]] == [0]

    # without a fallback, the overflow is the route's own 422 naming the runner's reason
    alone = FunctionConfig(pipeline="llm", model_id=tiny_chat, name="alone", aliases=["alone"],
                           executor="remote", url=runner.url)
    _, plain = warmgate_server(Settings(functions=[alone]))
    plain.timeout = httpx.Timeout(120)
    refused = plain.post("/v1/chat/completions", json={**ASK, "model": "alone"})
    assert refused.status_code == 422, refused.text
    assert "exceeds the model's context of 64 tokens" in refused.text and runner.url in refused.text

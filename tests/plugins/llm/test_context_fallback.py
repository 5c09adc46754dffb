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

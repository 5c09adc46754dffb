"""OpenAI-compatible engines (real processes speaking the API) as the runners of one LLM
function: both serve, a killed one is routed around, and /functions shows them warm."""

import httpx

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import Routing, RunnerConfig

from .openai_upstream import run_upstream

ASK = {"model": "org/relayed", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def test_engines_are_runners_of_one_llm_function(warmgate_server):
    with run_upstream("org/relayed") as first, run_upstream("org/relayed") as second:
        fn = FunctionConfig(pipeline="llm", model_id="org/relayed", executor="remote", max_concurrency=4,
                            runners=[RunnerConfig(url=first.url), RunnerConfig(url=second.url)],
                            routing=Routing(strategy="least-busy", health_interval=0.2))
        _, client = warmgate_server(Settings(functions=[fn]))
        client.timeout = httpx.Timeout(30)
        for _ in range(4):
            r = client.post("/v1/chat/completions", json=ASK)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == " t0 t1 t2"
        [fn_info] = [f for f in client.get("/functions").json()["functions"] if f["model_id"] == "org/relayed"]
        states = fn_info["runners"]
        assert [(s["state"], s["warm"], s["requests"]) for s in states] == [("OK", True, 2), ("OK", True, 2)]

        first.kill()
        for _ in range(4):
            assert client.post("/v1/chat/completions", json=ASK).status_code == 200
        with client.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True}) as streamed:
            assert streamed.status_code == 200 and b"".join(streamed.iter_raw()).endswith(b"data: [DONE]\n\n")

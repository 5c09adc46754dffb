"""A gateway with an LLM function on each backend (the tiny model in-process, the vLLM relay
to its engine process, Ollama through the fake), priced per token with a ledger, for tests that
run the same request on all three; and the ledger's rows."""

from __future__ import annotations

import sqlite3
from typing import Any

import openai

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import Price
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import wait_for

__all__ = ["BACKENDS", "OLLAMA_MODEL", "PRICE", "RELAYED_MODEL", "ledger_rows", "priced_gateway"]

PRICE = 1000
"""Wei per token (``settle: usage``)."""
OLLAMA_MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct"
RELAYED_MODEL = "org/relayed"
BACKENDS = ["transformers", "vllm", "ollama"]


def priced_gateway(warmgate_server: Any, tiny_chat: str, upstream: Any, ollama: Any, ledger: Any) -> Any:
    """-> (openai client, httpx client, model id by backend); the caller closes the openai client."""
    price = Price(price_per_unit=PRICE, settle="usage")
    functions = [
        FunctionConfig(pipeline="llm", model_id=tiny_chat, price=price),
        FunctionConfig(pipeline="llm", model_id=RELAYED_MODEL, price=price,
                       options={"backend": "vllm", "url": upstream.url}),
        FunctionConfig(pipeline="llm", model_id=OLLAMA_MODEL, price=price,
                       options={"backend": "ollama", "host": ollama.url}),
    ]
    server, client = warmgate_server(Settings(functions=functions, sections=[PricingSettings(ledger=str(ledger))]))
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    return sdk, client, {"transformers": tiny_chat, "vllm": RELAYED_MODEL, "ollama": OLLAMA_MODEL}


def ledger_rows(ledger: Any, count: int) -> list[tuple[Any, ...]]:
    """``(status, units, wei, prompt_tokens, completion_tokens)`` of every row, once ``count`` are in
    (a stream's row is committed just before its last byte)."""

    def read() -> list[tuple[Any, ...]]:
        with sqlite3.connect(ledger) as db:
            return db.execute("SELECT status, units, wei, prompt_tokens, completion_tokens FROM usage "
                              "ORDER BY time").fetchall()

    assert wait_for(lambda: len(read()) >= count)
    return read()

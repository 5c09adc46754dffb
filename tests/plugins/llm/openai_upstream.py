"""A vLLM-style engine for relay tests: an aiohttp server speaking OpenAI chat completions (one
JSON answer, or SSE with a chunk per token and usage when asked), run as its own process so a
test can have it die the way an engine does when it is killed.

The model answers ``" t0 t1 ... t7"``, one word per token, cut at ``max_tokens`` and before a
``stop`` string (named in ``stop_reason``, as vLLM does); asked for a ``json_schema``
(``response_format``; for ``json_object``, ``{"answer": "v"}``), a JSON document valid for it
(strings ``"v"``) in 4-character tokens. ``/v1/completions`` answers a raw prompt ending in WORD
with ``" WORD0 WORD1 ... WORD7"`` in ``text_completion`` chunks.

    python openai_upstream.py --port P --model NAME [--die-after N] [--no-usage] [--hang]

``--die-after N``: the first stream sends its role chunk and N tokens, waits half a second for
the relay to read them, then the process kills itself (SIGKILL); ``--no-usage``: no ``usage`` anywhere (an engine that ignores
``stream_options``); ``--hang``: chat requests are accepted and never answered.
With ``tools``, it calls them (see ``_tool_calls``); with ``logprobs``, it answers them
(``_logprob``; on ``/v1/completions`` in the legacy shape). ``GET /last`` answers the body of
the last chat or completions request, as the engine received it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

try:
    from .json_instances import instance_of
except ImportError:  # run as a script
    from json_instances import instance_of  # type: ignore[no-redef]

__all__ = ["ANSWER_WORDS", "Upstream", "run_upstream"]

ANSWER_WORDS = 8


def _app(args: argparse.Namespace) -> web.Application:
    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": args.model, "object": "model",
                                                               "max_model_len": 4096}]})

    received: list[dict] = []

    async def last(request: web.Request) -> web.Response:
        return web.json_response(received[-1] if received else None)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        received.append(body)
        if args.hang:
            await asyncio.Event().wait()
        calls = _tool_calls(body)
        if calls:
            return await _answer_with_calls(request, body, calls)
        limit = int(body.get("max_tokens") or 16)
        words = [f" t{i}" for i in range(min(limit, ANSWER_WORDS))]
        finish = "length" if len(words) == limit else "stop"
        response_format = body.get("response_format") or {}
        schema = (response_format.get("json_schema") or {}).get("schema")
        if response_format.get("type") == "json_object":
            schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
        if schema is not None:  # constrained, as vLLM's guided decoding answers
            document = json.dumps(instance_of(schema, "v"))
            words, finish = [document[i:i + 4] for i in range(0, len(document), 4)], "stop"
        stop_reason = None
        stops = [body["stop"]] if isinstance(body.get("stop"), str) else body.get("stop") or []
        for i in range(len(words)):  # as vLLM: cut before the first stop string, which it names
            matched = next((s for s in stops if s in "".join(words[:i + 1])), None)
            if matched is not None:
                words, finish, stop_reason = words[:i], "stop", matched
                break
        usage = {"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}
        base = {"id": "chatcmpl-upstream", "created": 0, "model": args.model}
        logprobs = [_logprob(word, i, body) for i, word in enumerate(words)] if body.get("logprobs") else None
        if not body.get("stream"):
            answer = {**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "".join(words)}, "finish_reason": finish,
                 "logprobs": logprobs and {"content": logprobs}, "stop_reason": stop_reason}]}
            if not args.no_usage:
                answer["usage"] = usage
            return web.json_response(answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(delta: dict, finish: str | None = None, logprob: dict | None = None) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": finish,
                      "logprobs": logprob and {"content": [logprob]}}
            if finish is not None:
                choice["stop_reason"] = stop_reason
            chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        await send({"role": "assistant", "content": ""})
        for i, word in enumerate(words):
            if args.die_after is not None and i == args.die_after:
                # as an engine killed mid-stream, once the relay has read what was sent: aiohttp's
                # reader raises the broken connection before any bytes still in its buffer
                await asyncio.sleep(0.5)
                os.kill(os.getpid(), signal.SIGKILL)
            await send({"content": word}, logprob=logprobs[i] if logprobs else None)
        await send({}, finish)
        if not args.no_usage and (body.get("stream_options") or {}).get("include_usage"):
            await response.write(b"data: " + json.dumps({**base, "object": "chat.completion.chunk", "choices": [],
                                                         "usage": usage}).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        received.append(body)
        return await _text_completion(request, body, args)

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/last", last)  # the last chat request's body, for assertions
    return app


def _logprob(word: str, i: int, body: dict) -> dict:
    """Word ``i``'s logprobs as vLLM answers them: -0.5 - i/10, and ``top_logprobs`` candidates."""
    tops = [{"token": f" c{j}", "logprob": -0.1 * (j + 1), "bytes": list(f" c{j}".encode())}
            for j in range(body.get("top_logprobs") or 0)]
    return {"token": word, "logprob": -0.5 - i / 10, "bytes": list(word.encode()), "top_logprobs": tops}


async def _text_completion(request: web.Request, body: dict, args: argparse.Namespace) -> web.StreamResponse:
    """A legacy completion of a raw prompt: one JSON answer, or ``text_completion`` chunks."""
    tag = str(body["prompt"]).split()[-1]
    limit = int(body.get("max_tokens") or 16)
    words = [f" {tag}{i}" for i in range(min(limit, ANSWER_WORDS))]
    finish = "length" if len(words) == limit else "stop"
    text = "".join(words)
    cut = min((i for i in (text.find(stop) for stop in body.get("stop") or [] if stop) if i >= 0), default=-1)
    if cut >= 0:  # as vLLM honours stop sequences: the text up to the first one
        kept, used = [], 0
        for word in words:
            if used + len(word) > cut:
                kept.append(word[:cut - used])
                break
            kept.append(word)
            used += len(word)
        words, finish = [word for word in kept if word], "stop"
    usage = {"prompt_tokens": len(str(body["prompt"]).split()), "completion_tokens": len(words)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    base = {"id": "cmpl-upstream", "object": "text_completion", "created": 0, "model": args.model}
    top = body.get("logprobs")

    def logprobs(first: int, chosen: list[str]) -> dict | None:  # as vLLM answers the legacy shape
        if top is None:
            return None
        entries = [_logprob(word, first + i, {"top_logprobs": top}) for i, word in enumerate(chosen)]
        return {"tokens": chosen, "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries] if top else None,
                "text_offset": [len("".join(chosen[:i])) for i in range(len(chosen))]}

    if not body.get("stream"):
        return web.json_response({**base, "usage": usage, "choices": [
            {"index": 0, "text": "".join(words), "logprobs": logprobs(0, words), "finish_reason": finish}]})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)

    async def send(choices: list[dict], **extra: object) -> None:
        await response.write(b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n")

    for i, word in enumerate(words):
        await send([{"index": 0, "text": word, "logprobs": logprobs(i, [word]),
                     "finish_reason": finish if i == len(words) - 1 else None}])
    if (body.get("stream_options") or {}).get("include_usage"):
        await send([], usage=usage)
    await response.write(b"data: [DONE]\n\n")
    return response


def _tool_calls(body: dict) -> list[dict]:
    """With tools and a user message last, the engine calls each tool (the named one only, for a
    named ``tool_choice``) with arguments valid for its parameters (strings ``"v"``), as vLLM's
    parsers answer."""
    choice = body.get("tool_choice")
    if not body.get("tools") or choice == "none" or body["messages"][-1]["role"] != "user":
        return []
    tools = [t["function"] for t in body["tools"]]
    if isinstance(choice, dict):
        tools = [t for t in tools if t["name"] == choice["function"]["name"]]
    return [{"id": f"chatcmpl-tool-{i}", "type": "function",
             "function": {"name": tool["name"], "arguments": json.dumps(instance_of(tool.get("parameters") or {}, "v"))}}
            for i, tool in enumerate(tools)]


async def _answer_with_calls(request: web.Request, body: dict, calls: list[dict]) -> web.StreamResponse:
    base = {"id": "chatcmpl-upstream", "created": 0, "model": body["model"]}
    usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    if not body.get("stream"):
        return web.json_response({**base, "object": "chat.completion", "usage": usage, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": calls},
             "finish_reason": "tool_calls"}]})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)

    async def send(delta: dict, finish: str | None = None) -> None:
        chunk = {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta,
                                                                         "finish_reason": finish}]}
        await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

    await send({"role": "assistant", "content": ""})
    for index, call in enumerate(calls):  # id and name first, then the arguments in fragments, as vLLM streams
        await send({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                    "function": {"name": call["function"]["name"], "arguments": ""}}]})
        arguments = call["function"]["arguments"]
        for start in range(0, len(arguments), 4):
            await send({"tool_calls": [{"index": index, "function": {"arguments": arguments[start:start + 4]}}]})
    await send({}, "tool_calls")
    if (body.get("stream_options") or {}).get("include_usage"):
        await response.write(b"data: " + json.dumps({**base, "object": "chat.completion.chunk", "choices": [],
                                                     "usage": usage}).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    return response


class Upstream:
    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@contextmanager
def run_upstream(model: str, *flags: str) -> Iterator[Upstream]:
    """The engine on a free loopback port, ready; killed on exit."""
    from warmgate.testing.process import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--port", str(port), "--model", model, *flags])
    upstream = Upstream(process, f"http://127.0.0.1:{port}")
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                if httpx.get(upstream.url + "/v1/models", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the upstream did not start (exit code {process.poll()})")
            time.sleep(0.05)
        yield upstream
    finally:
        upstream.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--die-after", type=int)
    parser.add_argument("--no-usage", action="store_true")
    parser.add_argument("--hang", action="store_true")
    options = parser.parse_args()
    web.run_app(_app(options), host="127.0.0.1", port=options.port, print=None, handle_signals=True)
    sys.exit(0)

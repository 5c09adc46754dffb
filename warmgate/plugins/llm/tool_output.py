"""Tool calls in and out of a chat template, for in-process models: OpenAI messages turned into
what Hugging Face chat templates expect, and the calls a model writes found in its text, in the
formats common templates teach (Hermes/Qwen ``<tool_call>``, Llama 3.1 JSON, Mistral
``[TOOL_CALLS]``). Text that is no valid call stays content: nothing is dropped."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from warmgate.plugins.llm.backend import Delta, GenerationParams, TokenLogprob, ToolCallDelta

__all__ = ["TOOL_PARSERS", "AnswerShaper", "ForcedCallsStream", "ToolCallSplitter", "parse_calls", "parser_for",
           "template_messages"]

TOOL_PARSERS = {"hermes": "<tool_call>", "llama3_json": "<|python_tag|>", "mistral": "[TOOL_CALLS]"}
"""Each parser by name (the ``tool_parser`` option), with the text that starts a call."""

_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_MISTRAL_ARGS = re.compile(r"\s*([\w.-]+)\[ARGS\]")
_decoder = json.JSONDecoder()

Call = tuple[str, str]
"""A call's function name and its arguments as a JSON string."""


def parser_for(chat_template: str | None, option: str | None) -> str:
    """The parser the ``tool_parser`` option names, else the one the chat template teaches
    (Hermes when it teaches none of them: the format most templates use)."""
    if option:
        if option not in TOOL_PARSERS:
            raise ValueError(f"tool_parser {option!r} is not one of {', '.join(TOOL_PARSERS)}")
        return option
    template = chat_template or ""
    if "[TOOL_CALLS]" in template:
        return "mistral"
    if "<|python_tag|>" in template or "ipython" in template:
        return "llama3_json"
    return "hermes"


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages as chat templates take them: text content, an assistant's calls with
    their arguments as objects, a tool result with the name of the function it answers."""
    names: dict[str, str] = {}
    converted = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text") or "" for part in content if part.get("type") == "text")
        entry: dict[str, Any] = {"role": message["role"], "content": content or ""}
        if message.get("tool_calls"):
            entry["tool_calls"] = []
            for call in message["tool_calls"]:
                names[call["id"]] = call["function"]["name"]
                entry["tool_calls"].append({"id": call["id"], "type": "function", "function": {
                    "name": call["function"]["name"], "arguments": _arguments(call["function"]["arguments"])}})
        if message["role"] == "tool":
            entry["tool_call_id"] = message.get("tool_call_id")
            entry["name"] = names.get(message.get("tool_call_id") or "", "")
        converted.append(entry)
    return converted


def _arguments(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError:
        return text


def parse_calls(parser: str, text: str) -> tuple[str, list[Call]]:
    """The content before the first call, and the calls; no calls when the text after the
    marker does not parse (it is all content then)."""
    if parser == "llama3_json":
        head, marker, tail = text.partition("<|python_tag|>")
        if not marker:
            head, tail = "", text
            if not text.lstrip().startswith("{"):
                return text, []
        calls = _json_calls(tail, separator=";")
    else:
        head, marker, tail = text.partition(TOOL_PARSERS[parser])
        if not marker:
            return text, []
        calls = _hermes_calls(text) if parser == "hermes" else _mistral_calls(tail)
    return (head, calls) if calls else (text, [])


def _call(value: Any) -> Call | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        return value["name"], arguments
    return value["name"], json.dumps(arguments, ensure_ascii=False)


def _hermes_calls(text: str) -> list[Call]:
    calls = []
    for body in _HERMES.findall(text):
        try:
            call = _call(json.loads(body))
        except json.JSONDecodeError:
            return []
        if call is None:
            return []
        calls.append(call)
    return calls


def _json_calls(text: str, separator: str) -> list[Call]:
    calls: list[Call] = []
    rest = text.strip()
    while rest:
        try:
            value, end = _decoder.raw_decode(rest)
        except json.JSONDecodeError:
            return []
        for item in value if isinstance(value, list) else [value]:
            call = _call(item)
            if call is None:
                return []
            calls.append(call)
        rest = rest[end:].strip().removeprefix(separator).strip()
    return calls


def _mistral_calls(text: str) -> list[Call]:
    if text.lstrip().startswith("["):
        return _json_calls(text, separator="")
    calls = []
    for chunk in text.split("[TOOL_CALLS]"):
        match = _MISTRAL_ARGS.match(chunk)
        if match is None:
            return []
        try:
            arguments, _ = _decoder.raw_decode(chunk[match.end():].strip())
        except json.JSONDecodeError:
            return []
        calls.append((match.group(1), json.dumps(arguments, ensure_ascii=False)))
    return calls


class ToolCallSplitter:
    """Streams content until a call starts, then holds the rest back for ``parse_calls``: text
    that might begin the marker is held until it is known not to."""

    def __init__(self, parser: str) -> None:
        self.parser = parser
        self.marker = TOOL_PARSERS[parser]
        self.held = ""
        self.calling = False
        self.sent_any = False

    def feed(self, text: str) -> str:
        self.held += text
        if self.calling:
            return ""
        at = self.held.find(self.marker)
        if at < 0 and self.parser == "llama3_json" and not self.sent_any and self.held.lstrip().startswith("{"):
            at = len(self.held) - len(self.held.lstrip())
        if at >= 0:
            self.calling = True
            out, self.held = self.held[:at], self.held[at:]
        else:
            keep = next((n for n in range(min(len(self.marker) - 1, len(self.held)), 0, -1)
                         if self.marker.startswith(self.held[-n:])), 0)
            if self.parser == "llama3_json" and not self.sent_any and not self.held.strip():
                keep = len(self.held)
            out, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        self.sent_any = self.sent_any or bool(out.strip())
        return out

    def finish(self) -> tuple[str, list[Call]]:
        """The content still held, and the calls."""
        if not self.calling:
            return self.held, []
        content, calls = parse_calls(self.parser, self.held)
        return content, calls


class ForcedCallsStream:
    """The calls of a constrained ``tool_choice: required`` answer (a JSON list of ``{"name",
    "arguments"}``) as the text is decoded, the way OpenAI streams them: a call's id and name once
    its name is complete, then its arguments' text fragment by fragment (held until the name is
    known, should a grammar put it second). A character-level JSON lexer: the grammar guarantees
    the document, this only needs to know where the name and the arguments are."""

    def __init__(self, first_id: str) -> None:
        self.first_id = first_id
        self.depth = 0
        """Brackets open: 1 inside the list, 2 inside a call's object, more inside its arguments."""
        self.in_string = False
        self.escaped = False
        self.field: str | None = None
        """What is being read at the call's level: a ``key``, the ``name`` string or the ``arguments``."""
        self.key = ""
        self.text = ""
        """The string read so far (a key or the name), still JSON-escaped."""
        self.index = -1
        self.named = False
        self.held = ""
        self.pieces: list[ToolCallDelta] = []

    def feed(self, text: str) -> list[ToolCallDelta]:
        for char in text:
            if self.field == "arguments":
                if self.in_string or self.depth > 2 or char not in ",}":
                    self._lex(char)
                    self._arguments(char)
                    continue
                self.field = None  # the call's own comma or brace: the arguments are complete
            if self.in_string:
                self._string(char)
            elif char in "[{":
                self.depth += 1
                if self.depth == 2:
                    self.index, self.named, self.held, self.field = self.index + 1, False, "", None
            elif char in "]}":
                self.depth -= 1
            elif self.depth == 2 and char == '"':
                self.in_string, self.text = True, ""
                self.field = "name" if self.field == "value" and self.key == "name" else "key"
            elif self.depth == 2 and char == ":":
                self.field = "arguments" if self.key == "arguments" else "value"
        pieces, self.pieces = self.pieces, []
        return pieces

    def _lex(self, char: str) -> None:
        if self.escaped:
            self.escaped = False
        elif self.in_string:
            self.escaped = char == "\\"
            self.in_string = char != '"'
        elif char == '"':
            self.in_string = True
        elif char in "[{":
            self.depth += 1
        elif char in "]}":
            self.depth -= 1

    def _string(self, char: str) -> None:
        if self.escaped or char not in '"\\':
            self.escaped = False
            self.text += char
            return
        if char == "\\":
            self.escaped = True
            self.text += char
            return
        self.in_string = False
        value = json.loads(f'"{self.text}"')
        if self.field == "key":
            self.key = value
        else:  # the name: the call starts, with what arguments came before it
            self.named = True
            call_id = self.first_id if self.index == 0 else f"call_{os.urandom(12).hex()}"
            self.pieces.append(ToolCallDelta(index=self.index, id=call_id, name=value))
            if self.held:
                self._arguments(self.held)
        self.field = None

    def _arguments(self, text: str) -> None:
        if not self.named:
            self.held += text
        elif self.pieces and self.pieces[-1].index == self.index and self.pieces[-1].id is None:
            self.pieces[-1].arguments += text
        else:
            self.pieces.append(ToolCallDelta(index=self.index, arguments=text))


class AnswerShaper:
    """Turns the streamer's text into the deltas of the answer the request asked for: text, tool
    calls found in the text (``tool_choice`` auto), or the calls of a constrained answer."""

    def __init__(self, params: GenerationParams, kind: str | None, parser: str, tokenizer: Any) -> None:
        self.kind = kind
        self.name = params.tool_choice["function"]["name"] if kind == "call" else None  # type: ignore[index]
        auto = bool(params.tools) and params.tool_choice in (None, "auto") and kind is None
        self.splitter = ToolCallSplitter(parser) if auto else None
        self.skip_special = not (auto and parser == "mistral")  # its marker is a special token
        self.specials = [t for t in (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) if t]
        self.held: list[str] = []
        self.tokens = 0
        self.logprobs: list[TokenLogprob] = []
        self.call_id = f"call_{os.urandom(12).hex()}"
        self.forced = ForcedCallsStream(self.call_id) if kind == "calls" else None

    def feed(self, text: str, tokens: int, logprobs: list[TokenLogprob] | None) -> list[Delta]:
        if self.kind == "call":  # the arguments of the named function, as they come
            first = not self.held
            self.held.append(text)
            piece = ToolCallDelta(index=0, id=self.call_id if first else None, name=self.name if first else None,
                                  arguments=text)
            return [Delta(tool_calls=[piece], tokens=tokens)]
        if self.forced is not None:  # the calls of tool_choice required, each as its name and arguments come
            self.tokens += tokens
            pieces = self.forced.feed(text)
            if not pieces:
                return []
            delta, self.tokens = Delta(tool_calls=pieces, tokens=self.tokens), 0
            return [delta]
        if self.splitter is None:
            return [Delta(text=text, tokens=tokens, logprobs=logprobs)]
        if not self.skip_special:
            for special in self.specials:
                text = text.replace(special, "")
        self.tokens += tokens
        self.logprobs += logprobs or ()
        out = self.splitter.feed(text)
        return [self._text(out, logprobs is not None)] if out else []

    def _text(self, text: str, with_logprobs: bool) -> Delta:
        delta = Delta(text=text, tokens=self.tokens, logprobs=self.logprobs if with_logprobs else None)
        self.tokens, self.logprobs = 0, []
        return delta

    def finish(self) -> list[Delta]:
        if self.splitter is not None:
            content, calls = self.splitter.finish()
            if not calls:
                return [self._text(content, bool(self.logprobs))] if content else []
        else:
            return []
        deltas = []
        for index, (name, arguments) in enumerate(calls):  # as OpenAI streams them: id and name, then arguments
            call_id = self.call_id if index == 0 else f"call_{os.urandom(12).hex()}"
            deltas += [Delta(tool_calls=[ToolCallDelta(index=index, id=call_id, name=name)], tokens=self.tokens),
                       Delta(tool_calls=[ToolCallDelta(index=index, arguments=arguments)])]
            self.tokens = 0
        return deltas

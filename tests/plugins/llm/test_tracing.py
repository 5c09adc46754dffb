"""An LLM request's trace: its engine call with OpenTelemetry's GenAI attributes, continued by
the OpenAI-compatible engine it is relayed to (the vllm backend in front of another warmgate
serving the tiny chat model), all exported over OTLP/HTTP to a test receiver."""

import openai

from warmgate import FunctionConfig, Settings
from warmgate.core.tracing.settings import TracingSettings
from warmgate.testing.otlp import OTLPReceiver

SERVER, CLIENT = 2, 3


def test_a_relayed_stream_is_one_trace_with_the_genai_attributes(warmgate_server, tiny_chat):
    with OTLPReceiver() as receiver:
        def traced(service):
            return [TracingSettings(endpoint=receiver.endpoint, service_name=service)]

        engine, _ = warmgate_server(Settings(functions=[FunctionConfig(pipeline="llm", model_id=tiny_chat)],
                                             sections=traced("engine")))
        relay = FunctionConfig(pipeline="llm", model_id=tiny_chat, options={"backend": "vllm", "url": engine.url})
        gateway, _ = warmgate_server(Settings(functions=[relay], sections=traced("gateway")))
        with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as sdk:
            chunks = list(sdk.chat.completions.create(model="", messages=[{"role": "user", "content": "hi"}],
                                                      max_tokens=4, stream=True, stream_options={"include_usage": True}))
        usage = chunks[-1].usage

        def complete(spans):
            names = {(s.service, s.kind, s.name) for s in spans}
            return {("gateway", CLIENT, f"chat {tiny_chat}"), ("engine", CLIENT, f"chat {tiny_chat}"),
                    ("gateway", SERVER, "POST /v1/chat/completions"), ("engine", SERVER, "POST /v1/chat/completions")} <= names

        spans = receiver.wait_for(complete)
    [relayed] = [s for s in spans if s.service == "gateway" and s.kind == CLIENT and s.name.startswith("chat ")]
    attributes = relayed.attributes
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.request.model"] == tiny_chat
    assert attributes["gen_ai.request.max_tokens"] == 4 and attributes["gen_ai.request.stream"] is True
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == \
        (usage.prompt_tokens, usage.completion_tokens)
    assert attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert attributes["gen_ai.response.finish_reasons"] in (["stop"], ["length"])
    assert attributes["warmgate.llm.backend"] == "vllm"
    [upstream] = [s for s in spans if s.service == "engine" and s.kind == SERVER and s.name == "POST /v1/chat/completions"]
    assert (upstream.trace_id, upstream.parent_id) == (relayed.trace_id, relayed.span_id)  # the engine continued it
    [generated] = [s for s in spans if s.service == "engine" and s.kind == CLIENT and s.name.startswith("chat ")]
    assert generated.trace_id == relayed.trace_id and generated.attributes["warmgate.llm.backend"] == "transformers"
    [front] = [s for s in spans if s.service == "gateway" and s.kind == SERVER]
    assert front.attributes["gen_ai.request.model"] == tiny_chat
    assert front.attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens


def test_n_choices_are_sibling_engine_spans_each_continued_by_the_engine(warmgate_server, tiny_chat):
    with OTLPReceiver() as receiver:
        engine, _ = warmgate_server(Settings(functions=[FunctionConfig(pipeline="llm", model_id=tiny_chat)],
                                             sections=[TracingSettings(endpoint=receiver.endpoint, service_name="engine")]))
        relay = FunctionConfig(pipeline="llm", model_id=tiny_chat, options={"backend": "vllm", "url": engine.url})
        gateway, _ = warmgate_server(Settings(functions=[relay], sections=[
            TracingSettings(endpoint=receiver.endpoint, service_name="gateway")]))
        with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as sdk:
            completion = sdk.chat.completions.create(model="", messages=[{"role": "user", "content": "hi"}],
                                                     max_tokens=3, n=2)
        assert [c.index for c in completion.choices] == [0, 1]
        def relayed(s):
            return s.service == "engine" and s.name == "POST /v1/chat/completions"

        spans = receiver.wait_for(lambda got: sum(map(relayed, got)) == 2
                                  and sum(s.service == "gateway" and s.name.startswith("chat ") for s in got) == 2)
    [execute] = [s for s in spans if s.service == "gateway" and s.name == "execute local"]
    choices = [s for s in spans if s.service == "gateway" and s.name == f"chat {tiny_chat}"]
    assert [c.parent_id for c in choices] == [execute.span_id] * 2  # siblings under the executor call
    assert all(c.attributes["gen_ai.usage.output_tokens"] >= 1 for c in choices)
    upstreams = [s for s in spans if relayed(s)]
    assert {u.parent_id for u in upstreams} == {c.span_id for c in choices}  # each choice's call, continued
    assert {u.trace_id for u in upstreams} == {execute.trace_id}

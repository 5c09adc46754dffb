"""In-process generation with transformers: chat template, a streamer fed by a worker thread,
cancellation through a stopping criterion. torch and transformers are imported on load only."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from warmgate.core.functions.spec import module_bytes
from warmgate.core.http.errors import ClientError
from warmgate.plugins.llm.backend import Delta, GenerationParams, TokenLogprob, Usage
from warmgate.plugins.llm.grammar import ConstrainedSampler, Grammars, constraint
from warmgate.plugins.llm.sampling import LogprobRecorder, processors
from warmgate.plugins.llm.tool_output import AnswerShaper, parser_for, template_messages

__all__ = ["TransformersBackend", "load_transformers"]

_DONE = object()


def load_transformers(model_id: str, options: dict[str, Any]) -> TransformersBackend:
    """Load tokenizer and model (a worker thread calls this); a vision-language model (one
    ``AutoModelForImageTextToText`` knows) with its processor, whose chat template places the
    images. Options: ``dtype`` (``auto``, ``float16``, ``bfloat16``, ``float32``), ``device``
    (``cpu``, ``cuda``, ``cuda:1``, ``auto``), ``trust_remote_code``, ``tool_parser`` (``hermes``,
    ``llama3_json``, ``mistral``; default: the one the chat template teaches)."""
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    except ImportError as exc:
        raise ImportError(f"the transformers LLM backend needs the [llm] extra "
                          f"(pip install torch, then pip install 'warmgate[llm]'): {exc}") from exc

    device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = options.get("dtype", "auto")
    trust = bool(options.get("trust_remote_code", False))
    config = AutoConfig.from_pretrained(model_id, trust_remote_code=trust)
    processor = None
    auto_model: Any = AutoModelForCausalLM
    if config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=trust)
        tokenizer, auto_model = processor.tokenizer, AutoModelForImageTextToText
        template = getattr(processor, "chat_template", None)
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust)
        template = tokenizer.chat_template
    if template is None:
        raise ValueError(f"{model_id} has no chat template; it is not a chat model")
    model = auto_model.from_pretrained(
        model_id, dtype=dtype if dtype == "auto" else getattr(torch, dtype), trust_remote_code=trust,
        device_map=device if device == "auto" else None,
    )
    if device != "auto":
        model.to(device)
    model.eval()
    backend = TransformersBackend(model, tokenizer, options.get("tool_parser"), processor)
    if options.get("max_model_len"):  # vLLM's name: a context shorter than the model's
        backend.context_length = min(c for c in (backend.context_length, int(options["max_model_len"])) if c)
    return backend


def _with_images(templated: list[dict[str, Any]], params: GenerationParams) -> list[dict[str, Any]]:
    """Templated messages whose originals had content parts get them back as a processor's
    chat template takes them: text parts and ``{"type": "image", "image": <PIL image>}``."""
    images = iter(params.images)
    for entry, original in zip(templated, params.messages, strict=True):
        content = original.get("content")
        if isinstance(content, list):
            entry["content"] = [{"type": "text", "text": part.get("text") or ""} if part.get("type") == "text"
                                else {"type": "image", "image": next(images)} for part in content]
        else:
            entry["content"] = [{"type": "text", "text": entry["content"]}]
    return templated


class _Cancelled:
    """A stopping criterion that ends generation when the request is gone."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def _counting_streamer(tokenizer: Any, recorder: LogprobRecorder | None, skip_special: bool) -> Any:
    """A ``TextIteratorStreamer`` that hands out ``(text, tokens, logprobs)``: each piece of text
    with the generated tokens it completes (what a stream that fails later is billed for) and,
    when recording, their log-probabilities."""
    from transformers import TextIteratorStreamer

    class CountingStreamer(TextIteratorStreamer):  # type: ignore[misc]
        tokens = 0
        logprobs: list[TokenLogprob] = []

        def put(self, value: Any) -> None:
            if not (self.skip_prompt and self.next_tokens_are_prompt):
                ids = value.reshape(-1).tolist()  # one sequence: no batching here
                self.tokens += len(ids)
                if recorder is not None:
                    self.logprobs = [*self.logprobs, *(recorder.entry(i) for i in ids)]
            super().put(value)

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text or stream_end:  # tokens with no text yet (a partial character) go with the next piece
                if text:
                    logprobs = self.logprobs if recorder is not None else None
                    self.text_queue.put((text, self.tokens, logprobs), timeout=self.timeout)
                    self.tokens, self.logprobs = 0, []
                if stream_end:
                    self.text_queue.put(self.stop_signal, timeout=self.timeout)

    return CountingStreamer(tokenizer, skip_prompt=True, skip_special_tokens=skip_special)


class TransformersBackend:
    backend_name = "transformers"
    features = frozenset({"prompt", "stop", "seed", "tools", "tool_choice", "response_format", "logprobs",
                          "penalties", "logit_bias"})
    concurrent_choices = False  # one generate at a time: a process-wide seed stays reproducible
    forwards_unknown_fields = False
    extra_fields = frozenset({"repetition_penalty"})
    """vLLM's multiplicative penalty (1: off), which transformers ships as a logits processor."""

    def __init__(self, model: Any, tokenizer: Any, tool_parser: str | None = None, processor: Any = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.processor = processor
        """A vision-language model's processor (None: a text-only model): it templates and encodes."""
        if processor is not None:
            self.features = self.features | {"image_content"}
        self.context_length: int | None = getattr(model.config.get_text_config(), "max_position_embeddings", None)
        self.memory_bytes = module_bytes(model)
        self.tool_parser = parser_for(processor.chat_template if processor is not None else tokenizer.chat_template,
                                      tool_parser)
        embeddings = model.get_output_embeddings()
        self.vocab_size = int(embeddings.weight.shape[0]) if embeddings is not None else model.config.vocab_size
        self._grammars: Grammars | None = None

    def _encode(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> Any:
        templating = self.processor if self.processor is not None else self.tokenizer
        return templating.apply_chat_template(messages, tools=tools or None, add_generation_prompt=True,
                                              tokenize=True, return_tensors="pt", return_dict=True)

    def _encode_request(self, params: GenerationParams) -> Any:
        if params.prompt is not None:
            return self._encode_prompt(params.prompt)
        tools = params.tools if params.tool_choice != "none" else None
        messages = template_messages(params.messages)
        if self.processor is not None:
            messages = _with_images(messages, params)
        return self._encode(messages, tools)

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return int(self._encode(messages)["input_ids"].shape[1])

    def _encode_prompt(self, prompt: str) -> Any:
        """A raw prompt (completions): tokenized as it is, without the chat template."""
        return self.tokenizer(prompt, return_tensors="pt")

    def count_raw_prompt_tokens(self, prompt: str) -> int:
        return int(self._encode_prompt(prompt)["input_ids"].shape[1])

    def count_request_tokens(self, params: GenerationParams) -> int:
        """The prompt as generation sees it: with the tools and the calls of earlier turns."""
        return int(self._encode_request(params)["input_ids"].shape[1])

    def _sampler(self, params: GenerationParams, constrained: tuple[str, dict[str, Any], str]) -> ConstrainedSampler:
        _, schema, field = constrained
        if self._grammars is None:
            try:
                self._grammars = Grammars(self.tokenizer, self.vocab_size)
            except Exception as exc:  # llguidance takes fast (tokenizers) tokenizers only
                raise ClientError(f"`{field.partition('.')[0].partition('[')[0]}`: constrained decoding is not "
                                  f"available for this model's tokenizer: {exc}") from exc
        return ConstrainedSampler(self._grammars, self._grammars.matcher(schema, field), params, field)

    async def generate(self, params: GenerationParams) -> AsyncIterator[Delta]:
        from transformers import LogitsProcessorList, StoppingCriteriaList

        constrained = constraint(params)
        sampler = await asyncio.to_thread(self._sampler, params, constrained) if constrained else None
        inputs = self._encode_request(params).to(self.model.device)
        if "pixel_values" in inputs:  # the processor gives float32; the vision tower may run in half precision
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        recorder = LogprobRecorder(self.tokenizer, params.top_logprobs or 0) if params.logprobs else None
        chain = [recorder] if recorder else []
        chain += processors(params, prompt_tokens, self.vocab_size)
        if sampler is not None:
            chain.append(sampler)
        shaper = AnswerShaper(params, constrained[0] if constrained else None, self.tool_parser, self.tokenizer)
        streamer = _counting_streamer(self.tokenizer, recorder, skip_special=shaper.skip_special)
        cancel = threading.Event()
        outcome: dict[str, Any] = {}
        sampling = params.temperature > 0 and sampler is None  # a constrained sampler samples itself
        kwargs: dict[str, Any] = {
            **inputs, "streamer": streamer, "max_new_tokens": params.max_tokens, "do_sample": sampling,
            "stopping_criteria": StoppingCriteriaList([_Cancelled(cancel)]),
            "logits_processor": LogitsProcessorList(chain),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if sampling:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=max(params.top_k, 0) or None)
        if params.stop:
            kwargs.update(stop_strings=params.stop, tokenizer=self.tokenizer)

        def run() -> None:
            import torch

            try:
                if params.seed is not None:
                    torch.manual_seed(params.seed)  # process-wide: exact only without concurrent requests
                with torch.inference_mode():
                    outcome["sequences"] = self.model.generate(**kwargs)
            except BaseException as exc:  # handed to the request below
                outcome["error"] = exc
            finally:
                streamer.end()

        thread = threading.Thread(target=run, name="warmgate-generate", daemon=True)
        thread.start()
        chunks = iter(streamer)
        try:
            while (piece := await asyncio.to_thread(next, chunks, _DONE)) is not _DONE:
                for delta in shaper.feed(*piece):
                    yield delta
            await asyncio.to_thread(thread.join)
            if "error" in outcome:
                raise outcome["error"]
            for delta in shaper.finish():
                yield delta
            completion = int(outcome["sequences"].shape[1]) - prompt_tokens
            finish = "length" if completion >= params.max_tokens else "stop"
            if sampler is not None and sampler.finished_with(int(outcome["sequences"][0, -1])):
                finish = "stop"
            yield Delta(finish_reason=finish, usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion))
        finally:
            cancel.set()  # the client left or we are done: stop generating either way

    async def close(self) -> None:
        self.model = None
        self.tokenizer = None


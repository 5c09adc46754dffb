"""Logits processors for the transformers backend: OpenAI's presence and frequency penalties and
``logit_bias``, vLLM's ``repetition_penalty``, and the recorder behind ``logprobs``. torch is imported when one runs."""

from __future__ import annotations

import collections
from typing import Any

from warmgate.core.http.errors import ClientError
from warmgate.plugins.llm.backend import GenerationParams, TokenLogprob, TopLogprob

__all__ = ["LogprobRecorder", "PenaltyProcessor", "processors"]


class PenaltyProcessor:
    """OpenAI's penalties over the tokens generated so far (the prompt does not count, as on
    OpenAI and vLLM): minus ``frequency`` per occurrence, minus ``presence`` once."""

    def __init__(self, prompt_tokens: int, presence: float, frequency: float) -> None:
        self.prompt_tokens = prompt_tokens
        self.presence = presence
        self.frequency = frequency

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        generated = input_ids[:, self.prompt_tokens:]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class LogprobRecorder:
    """The first logits processor: keeps each step's log-probabilities (of the model, before
    penalties, bias and constraints, as vLLM reports them) until the streamer learns which token
    was chosen and asks for its ``entry``."""

    def __init__(self, tokenizer: Any, top: int) -> None:
        self.tokenizer = tokenizer
        self.top = top
        self.steps: collections.deque[Any] = collections.deque()
        self._texts: dict[int, str] = {}

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        self.steps.append(torch.log_softmax(scores[0].float(), dim=-1))
        return scores

    def entry(self, token: int) -> TokenLogprob:
        import torch

        row = self.steps.popleft()
        top = []
        if self.top:
            values, ids = torch.topk(row, self.top)
            top = [self._top(int(i), float(v)) for v, i in zip(values, ids, strict=True)]
        chosen = self._top(token, float(row[token]))
        return TokenLogprob(token=chosen.token, logprob=chosen.logprob, bytes=chosen.bytes, top_logprobs=top)

    def _top(self, token: int, logprob: float) -> TopLogprob:
        text = self._texts.get(token)
        if text is None:
            text = self._texts[token] = self.tokenizer.decode([token])
        return TopLogprob(token=text, logprob=max(logprob, -9999.0), bytes=list(text.encode()))


def processors(params: GenerationParams, prompt_tokens: int, vocab_size: int) -> list[Any]:
    """The processors ``params`` asks for, in the order they apply (logprobs see the model's own
    scores); a ``logit_bias`` key that is no token id of this model is a 400."""
    from transformers import RepetitionPenaltyLogitsProcessor, SequenceBiasLogitsProcessor

    chain: list[Any] = []
    repetition = params.unknown_fields.get("repetition_penalty")
    if repetition is not None:
        if isinstance(repetition, bool) or not isinstance(repetition, (int, float)) or repetition <= 0:
            raise ClientError(f"`repetition_penalty`: {repetition!r} is not a number above 0 (1: no penalty)")
        if repetition != 1:
            chain.append(RepetitionPenaltyLogitsProcessor(float(repetition)))
    if params.presence_penalty or params.frequency_penalty:
        chain.append(PenaltyProcessor(prompt_tokens, params.presence_penalty, params.frequency_penalty))
    if params.logit_bias:
        bias = {}
        for key, value in params.logit_bias.items():
            if not key.isdigit() or int(key) >= vocab_size:
                raise ClientError(f"`logit_bias`: {key!r} is not a token id of this model (0 to {vocab_size - 1})")
            bias[(int(key),)] = float(value)
        chain.append(SequenceBiasLogitsProcessor(sequence_bias=bias))
    return chain

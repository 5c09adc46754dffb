"""``POST /text-to-speech``: speech as a WAV data URL, from transformers text-to-speech models
(Bark, VITS/MMS, SpeechT5 with a vocoder) or Parler-TTS when its package is installed.

Text longer than ``max_chars`` is split at sentence boundaries, spoken piece by piece, and
joined, because every one of these models has a limit on what it says in one go. A piece the
model's tokenizer turns into nothing it can say (emoji, control characters, a script the model
has no letters for) is skipped; a text with nothing speakable left is a 400. The work stops
between pieces when the client has gone."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from warmgate.core.functions.cancel import raise_if_cancelled
from warmgate.core.functions.spec import Runner, module_bytes
from warmgate.core.http.errors import ClientError, LoadError
from warmgate.core.media import data_url, encode_wav
from warmgate.plugins.audio.wire import AudioResponse, MediaURL, TextToSpeechParams

__all__ = ["TextToSpeechRunner", "check_text", "load_text_to_speech", "split_sentences"]

DEFAULT_MAX_CHARS = 250
"""Characters per generation unless a function sets ``max_chars`` (Bark's comfortable length)."""
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def check_text(params: TextToSpeechParams, options: dict[str, Any]) -> TextToSpeechParams:
    """``prepare``: an empty text is refused before a model is loaded."""
    if not params.text.strip():
        raise ClientError("text: nothing to say; send a non-empty text")
    return params


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Pieces of at most ``max_chars``: whole sentences packed together where they fit; a longer
    sentence gets pieces of its own, split between words (a word over the limit, inside it)."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        if len(sentence) <= max_chars:
            _pack(pieces, [sentence], max_chars, join_last=True)
        else:
            words = [w[i:i + max_chars] for w in sentence.split() for i in range(0, len(w), max_chars)]
            _pack(pieces, words, max_chars, join_last=False)
    return pieces


def _pack(pieces: list[str], units: list[str], max_chars: int, *, join_last: bool) -> None:
    """Append ``units`` to ``pieces``, joining with spaces while the result fits."""
    for n, unit in enumerate(units):
        may_join = pieces and (join_last or n > 0) and len(pieces[-1]) + 1 + len(unit) <= max_chars
        if may_join:
            pieces[-1] = f"{pieces[-1]} {unit}"
        else:
            pieces.append(unit)


def speakable_by(tokenizer: Any) -> Callable[[str], bool]:
    """``speakable(text)``: whether ``tokenizer`` keeps anything of ``text`` but special tokens
    (padding, unknown) and word boundaries: VITS drops characters outside its vocabulary,
    SentencePiece maps them to ``<unk>``, and a model given no token fails deep inside its
    forward pass."""
    special = set(tokenizer.all_special_ids)

    def speakable(text: str) -> bool:
        kept = [i for i in tokenizer(text, add_special_tokens=False)["input_ids"] if i not in special]
        return bool(kept) and bool(tokenizer.decode(kept).strip())

    return speakable


class TextToSpeechRunner(Runner):
    def __init__(self, speak: Callable[[str, str], tuple[Any, int]], model: Any, max_chars: int,
                 speakable: Callable[[str], bool]) -> None:
        self.speak = speak
        """``speak(text, description) -> (mono float samples, sampling rate)``."""
        self.speakable = speakable
        self.max_chars = max_chars
        self.memory_bytes = module_bytes(model)
        self._lock = threading.Lock()

    def __call__(self, params: TextToSpeechParams) -> AudioResponse:
        import numpy as np

        parts, rate = [], 0
        with self._lock:
            pieces = [p for p in split_sentences(params.text, self.max_chars) if self.speakable(p)]
            if not pieces:
                raise ClientError("text: nothing speakable remains; the model's tokenizer drops every character "
                                  f"of {_preview(params.text)} (emoji, control characters, or a script it "
                                  "has no letters for)")
            for n, piece in enumerate(pieces):
                raise_if_cancelled(f"before piece {n + 1} of {len(pieces)}")
                samples, rate = self.speak(piece, params.description)
                parts.append(np.asarray(samples, dtype=np.float32).reshape(-1))
        return AudioResponse(audio=MediaURL(url=data_url(encode_wav(np.concatenate(parts), rate), "audio/wav")))

    def close(self) -> None:
        self.speak = None  # type: ignore[assignment]


def load_text_to_speech(model_id: str, options: dict[str, Any]) -> TextToSpeechRunner:
    """Parler-TTS models through ``parler_tts``; everything else through transformers'
    ``text-to-speech`` pipeline (SpeechT5 gets ``options.vocoder`` and ``options.speaker_embeddings``,
    a ``.npy`` file, else a neutral zero voice). ``description`` only steers Parler."""
    import torch

    device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, options.get("torch_dtype") or ("float32" if device == "cpu" else "float16"))
    max_chars = int(options.get("max_chars", DEFAULT_MAX_CHARS))
    if "parler" in options.get("served_model_id", model_id).lower():
        return _load_parler(model_id, device, dtype, max_chars)
    from transformers import AutoConfig, pipeline

    forward: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    config = AutoConfig.from_pretrained(model_id)
    if config.model_type == "speecht5":
        extra["vocoder"], forward["speaker_embeddings"] = _speecht5_voice(config, options, device, dtype)
    pipe = pipeline("text-to-speech", model=model_id, device=device, dtype=dtype, **extra)

    def speak(text: str, description: str) -> tuple[Any, int]:
        out = pipe(text, forward_params=forward) if forward else pipe(text)
        return out["audio"], int(out["sampling_rate"])

    return TextToSpeechRunner(speak, pipe.model, max_chars, speakable_by(pipe.tokenizer))


def _speecht5_voice(config: Any, options: dict[str, Any], device: str, dtype: Any) -> tuple[Any, Any]:
    import numpy as np
    import torch
    from transformers import SpeechT5HifiGan

    vocoder = SpeechT5HifiGan.from_pretrained(options.get("vocoder", "microsoft/speecht5_hifigan"))
    path = options.get("speaker_embeddings")
    voice = np.load(path) if path else np.zeros(config.speaker_embedding_dim, dtype=np.float32)
    embedding = torch.tensor(voice, dtype=dtype, device=device).reshape(1, -1)
    return vocoder.to(device, dtype), embedding


def _load_parler(model_id: str, device: str, dtype: Any, max_chars: int) -> TextToSpeechRunner:
    try:
        from parler_tts import ParlerTTSForConditionalGeneration
    except ImportError as exc:
        raise LoadError(f"{model_id} needs the parler-tts package (pip install parler-tts; it pins "
                        f"transformers 4.46, so give it its own environment): {exc}") from None
    import torch
    from transformers import AutoTokenizer

    model = ParlerTTSForConditionalGeneration.from_pretrained(model_id, dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_id)

    def speak(text: str, description: str) -> tuple[Any, int]:
        voice = tokenizer(description, return_tensors="pt").input_ids.to(device)
        prompt = tokenizer(text, return_tensors="pt").input_ids.to(device)
        with torch.no_grad():
            audio = model.generate(input_ids=voice, prompt_input_ids=prompt)
        return audio.float().cpu().numpy().reshape(-1), int(model.config.sampling_rate)

    return TextToSpeechRunner(speak, model, max_chars, speakable_by(tokenizer))


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")

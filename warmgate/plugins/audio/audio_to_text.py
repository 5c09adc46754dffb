"""``POST /audio-to-text``: Whisper (or any transformers speech-to-text model) on PyAV-decoded audio."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import msgspec

from warmgate.core.errors import ClientError, RequestValidationError
from warmgate.core.media import AUDIO_SAMPLE_RATE, AudioInput, decode_audio
from warmgate.core.spec import Runner
from warmgate.plugins.audio.wire import AudioToTextParams, Chunk, TextResponse

__all__ = ["AudioToTextRunner", "Transcription", "load_audio_to_text", "prepare_transcription"]

_TIMESTAMPS: dict[str, bool | str] = {"true": True, "1": True, "sentence": True, "false": False, "0": False,
                                      "word": "word"}
LONG_FORM_SECONDS = 30


@dataclass(frozen=True)
class Transcription(AudioInput):
    timestamps: bool | str = True
    """``True`` segment timestamps, ``"word"`` word timestamps, ``False`` none."""


def prepare_transcription(params: AudioToTextParams, options: dict[str, Any]) -> Transcription:
    """Check the text fields, then decode the audio, all before a function is acquired."""
    timestamps = _TIMESTAMPS.get(params.return_timestamps.strip().lower())
    if timestamps is None:
        raise RequestValidationError.single(["body", "return_timestamps"],
                                            "Expected 'true', 'false', 'sentence' or 'word' "
                                            f"(or 1/0), got {params.return_timestamps!r}")
    try:
        metadata = msgspec.json.decode(params.metadata or "{}")
    except msgspec.DecodeError as exc:
        raise ClientError(f"metadata: not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise ClientError(f"metadata: expected a JSON object, got {type(metadata).__name__}")
    return Transcription(params, decode_audio(params.audio), timestamps)


class AudioToTextRunner(Runner):
    def __init__(self, pipe: Any, options: dict[str, Any]) -> None:
        self.pipe = pipe
        self.batch_size = int(options.get("batch_size", 4))
        self.generate_kwargs = {k: options[k] for k in ("language", "task", "max_new_tokens") if k in options}
        model = pipe.model
        self.memory_bytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
        self._lock = threading.Lock()

    def __call__(self, request: Transcription) -> TextResponse:
        long_form = len(request.samples) > LONG_FORM_SECONDS * AUDIO_SAMPLE_RATE
        kwargs: dict[str, Any] = {"return_timestamps": request.timestamps, "generate_kwargs": dict(self.generate_kwargs)}
        if long_form:  # 30 s windows with overlap, transcribed in batches
            kwargs.update(chunk_length_s=LONG_FORM_SECONDS, batch_size=self.batch_size)
        with self._lock:
            result = self.pipe({"raw": request.samples, "sampling_rate": AUDIO_SAMPLE_RATE}, **kwargs)
        chunks = [Chunk(timestamp=list(c["timestamp"]), text=c["text"]) for c in result.get("chunks", [])]
        return TextResponse(text=result["text"], chunks=chunks)

    def close(self) -> None:
        self.pipe = None


def load_audio_to_text(model_id: str, options: dict[str, Any]) -> AudioToTextRunner:
    """``AutoModelForSpeechSeq2Seq`` + its processor in transformers' ASR pipeline; options
    ``device``, ``torch_dtype``, ``batch_size`` (long-form, default 4), ``language``, ``task``,
    ``max_new_tokens``."""
    import torch
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor, pipeline

    device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, options.get("torch_dtype") or ("float32" if device == "cpu" else "float16"))
    model = AutoModelForSpeechSeq2Seq.from_pretrained(model_id, dtype=dtype).to(device).eval()
    processor = AutoProcessor.from_pretrained(model_id)
    pipe = pipeline("automatic-speech-recognition", model=model, tokenizer=processor.tokenizer,
                    feature_extractor=processor.feature_extractor, dtype=dtype, device=device)
    return AudioToTextRunner(pipe, options)

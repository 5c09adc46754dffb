"""``POST /audio-to-text``: Whisper (or any transformers speech-to-text model) on PyAV-decoded audio."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from warmgate.core.functions.cancel import raise_if_cancelled
from warmgate.core.functions.spec import Runner, module_bytes
from warmgate.core.http.decode import json_field
from warmgate.core.http.errors import ClientError, ConfigError, LoadError, RequestValidationError
from warmgate.core.media import AUDIO_SAMPLE_RATE, AudioInput, decode_audio, max_audio_seconds
from warmgate.plugins.audio.wire import AudioToTextParams, Chunk, TextResponse

__all__ = ["AudioToTextRunner", "FasterWhisperRunner", "Transcription", "load_audio_to_text", "prepare_transcription"]

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
    metadata = json_field("metadata", params.metadata or "{}", "a JSON object")
    if not isinstance(metadata, dict):
        raise ClientError(f"metadata: expected a JSON object, got {type(metadata).__name__}")
    return Transcription(params, decode_audio(params.audio, max_seconds=max_audio_seconds(options)), timestamps)


def _stop_when_cancelled() -> Any:
    """A ``generate`` stopping criterion that raises ``RequestCancelled`` at the next token once
    the client has gone, so a long-form transcription stops within its current window."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            raise_if_cancelled("while transcribing")
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    import torch

    return StoppingCriteriaList([_Cancelled()])


def _until_cancelled(segments: Any) -> Any:
    """faster-whisper's segments, stopping between them once the client has gone."""
    for segment in segments:
        raise_if_cancelled("between segments")
        yield segment


class AudioToTextRunner(Runner):
    """Whisper through transformers' ASR pipeline."""

    def __init__(self, pipe: Any, options: dict[str, Any]) -> None:
        self.pipe = pipe
        self.batch_size = int(options.get("batch_size", 4))
        self.generate_kwargs = {k: options[k] for k in ("language", "task", "max_new_tokens") if k in options}
        model = pipe.model
        self.memory_bytes = module_bytes(model)
        self._lock = threading.Lock()

    def __call__(self, request: Transcription) -> TextResponse:
        long_form = len(request.samples) > LONG_FORM_SECONDS * AUDIO_SAMPLE_RATE
        generate = {**self.generate_kwargs, "stopping_criteria": _stop_when_cancelled()}
        kwargs: dict[str, Any] = {"return_timestamps": request.timestamps, "generate_kwargs": generate}
        if long_form:  # 30 s windows with overlap, transcribed in batches
            kwargs.update(chunk_length_s=LONG_FORM_SECONDS, batch_size=self.batch_size)
        with self._lock:
            result = self.pipe({"raw": request.samples, "sampling_rate": AUDIO_SAMPLE_RATE}, **kwargs)
        chunks = [Chunk(timestamp=list(c["timestamp"]), text=c["text"]) for c in result.get("chunks", [])]
        return TextResponse(text=result["text"], chunks=chunks)

    def close(self) -> None:
        self.pipe = None


class FasterWhisperRunner(Runner):
    """Whisper on CTranslate2 through faster-whisper (its own long-form windowing)."""

    def __init__(self, model: Any, options: dict[str, Any]) -> None:
        self.model = model
        self.kwargs = {k: options[k] for k in ("language", "task", "beam_size") if k in options}
        self._lock = threading.Lock()

    def __call__(self, request: Transcription) -> TextResponse:
        with self._lock:
            segments, _ = self.model.transcribe(request.samples, word_timestamps=request.timestamps == "word",
                                                without_timestamps=request.timestamps is False, **self.kwargs)
            segments = list(_until_cancelled(segments))  # a generator: the work happens while iterating
        text = "".join(segment.text for segment in segments)
        if request.timestamps == "word":
            chunks = [Chunk(timestamp=[float(w.start), float(w.end)], text=w.word)
                      for segment in segments for w in (segment.words or [])]
        elif request.timestamps:
            chunks = [Chunk(timestamp=[float(s.start), float(s.end)], text=s.text) for s in segments]
        else:
            chunks = []
        return TextResponse(text=text, chunks=chunks)

    def close(self) -> None:
        self.model = None


def load_audio_to_text(model_id: str, options: dict[str, Any]) -> Runner:
    """``options.backend``: ``transformers`` (default: ``AutoModelForSpeechSeq2Seq`` + its
    processor in the ASR pipeline) or ``faster-whisper``. Options ``device``, ``torch_dtype``
    (``compute_type`` for faster-whisper), ``batch_size`` (long-form, default 4), ``language``,
    ``task``, ``max_new_tokens``."""
    import torch

    backend = options.get("backend", "transformers")
    device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    if backend == "faster-whisper":
        return _load_faster_whisper(model_id, options, device)
    if backend != "transformers":
        raise ConfigError("audio-to-text function options", "backend",
                          f"'transformers' or 'faster-whisper', got {backend!r}")
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor, pipeline

    dtype = getattr(torch, options.get("torch_dtype") or ("float32" if device == "cpu" else "float16"))
    model = AutoModelForSpeechSeq2Seq.from_pretrained(model_id, dtype=dtype).to(device).eval()
    processor = AutoProcessor.from_pretrained(model_id)
    pipe = pipeline("automatic-speech-recognition", model=model, tokenizer=processor.tokenizer,
                    feature_extractor=processor.feature_extractor, dtype=dtype, device=device)
    return AudioToTextRunner(pipe, options)


def _load_faster_whisper(model_id: str, options: dict[str, Any], device: str) -> FasterWhisperRunner:
    """``openai/whisper-<size>`` ids become faster-whisper's size names (its CTranslate2
    conversions); other ids or directories must hold a CTranslate2 model."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise LoadError(f"the faster-whisper backend needs its package (pip install faster-whisper): {exc}") from None
    name = options.get("served_model_id", model_id)
    source = name.split("openai/whisper-", 1)[1] if name.startswith("openai/whisper-") else model_id
    model = WhisperModel(source, device=device, compute_type=options.get("compute_type", "default"))
    return FasterWhisperRunner(model, options)

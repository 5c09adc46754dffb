"""The audio plugin: audio-to-text (Whisper) on transformers with PyAV decoding, wire-compatible
with the Livepeer runner. Heavy imports happen in the loaders only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from warmgate.core.hookspecs import hookimpl
from warmgate.core.media import AudioInput
from warmgate.core.spec import DemoModel, PipelineSpec, PriceUnit
from warmgate.plugins.audio.audio_to_text import prepare_transcription
from warmgate.plugins.audio.wire import AudioToTextParams, TextResponse

__all__ = ["DEFAULT_MODELS"]

DEFAULT_MODELS = {"audio-to-text": "openai/whisper-large-v3"}


def _load_audio_to_text(model_id: str, options: dict[str, Any]) -> Any:
    from warmgate.plugins.audio.audio_to_text import load_audio_to_text

    return load_audio_to_text(model_id, options)


def _build_whisper(directory: Path) -> None:
    from warmgate.plugins.audio.demo import build_tiny_whisper

    build_tiny_whisper(directory)


def _milliseconds(request: AudioInput) -> int:
    return request.duration_ms


@hookimpl
def register_pipelines(register: Any) -> None:
    register(PipelineSpec(
        name="audio-to-text", request=AudioToTextParams, response=TextResponse, encoding="multipart",
        load=_load_audio_to_text, default_model_id=DEFAULT_MODELS["audio-to-text"], prepare=prepare_transcription,
        price_unit=PriceUnit.MILLISECOND, units=_milliseconds, summary="Audio To Text",
        operation_id="genAudioToText", description="Transcribe audio files to text.", max_body_size=50 * 2**20,
        demo=DemoModel(model_id="warmgate-demo/tiny-whisper", build=_build_whisper),
    ))

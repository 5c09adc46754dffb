"""The audio plugin: audio-to-text (Whisper, PyAV decoding) and text-to-speech (transformers TTS
models, Parler-TTS), wire-compatible with the Livepeer runner. Heavy imports happen in the
loaders only."""

from __future__ import annotations

from typing import Any

from warmgate.core.functions.spec import DemoModel, PriceUnit, SpecBase, deferred
from warmgate.core.hookspecs import hookimpl
from warmgate.core.media import AudioInput
from warmgate.core.settings import Price
from warmgate.plugins.audio.audio_to_text import prepare_transcription
from warmgate.plugins.audio.text_to_speech import check_text
from warmgate.plugins.audio.wire import AudioResponse, AudioToTextParams, TextResponse, TextToSpeechParams

__all__ = ["DEFAULT_MODELS"]

DEFAULT_MODELS = {"audio-to-text": "openai/whisper-large-v3", "text-to-speech": "parler-tts/parler-tts-large-v1"}


def _characters(request: TextToSpeechParams) -> int:
    return len(request.text)


def _milliseconds(request: AudioInput) -> int:
    return request.duration_ms


_TRANSFORMERS = SpecBase(engine_modules=("torch", "transformers.modeling_utils"))


def _demo(name: str, builder: str, price: int) -> DemoModel:
    return DemoModel(model_id=f"warmgate-demo/{name}", build=deferred(f"warmgate.plugins.audio.demo:{builder}"),
                     price=Price(price_per_unit=price))


@hookimpl
def register_pipelines(register: Any) -> None:
    register(_TRANSFORMERS.spec(
        name="audio-to-text", request=AudioToTextParams, response=TextResponse, encoding="multipart",
        load=deferred("warmgate.plugins.audio.audio_to_text:load_audio_to_text"),
        default_model_id=DEFAULT_MODELS["audio-to-text"], prepare=prepare_transcription,
        price_unit=PriceUnit.MILLISECOND, units=_milliseconds, max_body_size=50 * 2**20,
        description="Transcribe audio files to text.", demo=_demo("tiny-whisper", "build_tiny_whisper", 12_882_811)))
    register(_TRANSFORMERS.spec(
        name="text-to-speech", request=TextToSpeechParams, response=AudioResponse,
        load=deferred("warmgate.plugins.audio.text_to_speech:load_text_to_speech"),
        default_model_id=DEFAULT_MODELS["text-to-speech"], prepare=check_text,
        price_unit=PriceUnit.CHARACTER, units=_characters,
        description="Generate a text-to-speech audio file based on the provided text input and speaker description.",
        demo=_demo("tiny-vits", "build_tiny_vits", 5_000_000_000)))

"""Wire types of the audio pipelines, as the Livepeer runner spec defines them."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from warmgate.core.functions.spec import File

__all__ = ["AudioResponse", "AudioToTextParams", "Chunk", "MediaURL", "TextResponse", "TextToSpeechParams"]


class AudioToTextParams(msgspec.Struct, kw_only=True):
    audio: Annotated[File, Meta(description="Uploaded audio file to be transcribed.")]
    model_id: Annotated[str, Meta(description="Hugging Face model ID used for transcription.")] = ""
    return_timestamps: Annotated[str, Meta(description=(
        "Return timestamps for the transcribed text. Supported values: 'sentence', 'word', or a string boolean "
        "('true' or 'false'). Default is 'true' ('sentence'). 'false' means no timestamps. 'word' means "
        "word-based timestamps."))] = "true"
    metadata: Annotated[str, Meta(description="Additional job information to be passed to the pipeline.")] = "{}"


class Chunk(msgspec.Struct):
    """A chunk of text with a timestamp."""

    timestamp: Annotated[list[Any], Meta(description="The timestamp of the chunk.")]
    text: Annotated[str, Meta(description="The text of the chunk.")]


class TextResponse(msgspec.Struct):
    """Response model for text generation."""

    text: Annotated[str, Meta(description="The generated text.")]
    chunks: Annotated[list[Chunk], Meta(description="The generated text chunks.")]


DEFAULT_SPEAKER = "A male speaker delivers a slightly expressive and animated speech with a moderate speed and pitch."


class TextToSpeechParams(msgspec.Struct, kw_only=True):
    model_id: Annotated[str, Meta(description="Hugging Face model ID used for text to speech generation.")] = ""
    text: Annotated[str, Meta(description="Text input for speech generation.")] = ""
    description: Annotated[str, Meta(description="Description of speaker to steer text to speech generation.")] = (
        DEFAULT_SPEAKER)


class MediaURL(msgspec.Struct):
    """A URL from which media can be accessed."""

    url: Annotated[str, Meta(description="The URL where the media can be accessed.")]


class AudioResponse(msgspec.Struct):
    """Response model for audio generation."""

    audio: Annotated[MediaURL, Meta(description="The generated audio.")]

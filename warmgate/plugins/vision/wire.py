"""Wire types of the vision pipelines, as the Livepeer runner spec defines them."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from warmgate.core.spec import File

__all__ = ["ImageToTextParams", "ImageToTextResponse"]


class ImageToTextParams(msgspec.Struct, kw_only=True):
    image: Annotated[File, Meta(description="Uploaded image to transform with the pipeline.")]
    prompt: Annotated[str, Meta(description="Text prompt(s) to guide transformation.")] = ""
    model_id: Annotated[str, Meta(description="Hugging Face model ID used for transformation.")] = ""


class ImageToTextResponse(msgspec.Struct):
    """Response model for text generation."""

    text: Annotated[str, Meta(description="The generated text.")]

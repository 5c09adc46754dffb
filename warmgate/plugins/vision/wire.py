"""Wire types of the vision pipelines, as the Livepeer runner spec defines them."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from warmgate.core.functions.spec import File

__all__ = ["ImageToTextParams", "ImageToTextResponse", "MasksResponse", "SegmentAnything2Params"]


class ImageToTextParams(msgspec.Struct, kw_only=True):
    image: Annotated[File, Meta(description="Uploaded image to transform with the pipeline.")]
    prompt: Annotated[str, Meta(description="Text prompt(s) to guide transformation.")] = ""
    model_id: Annotated[str, Meta(description="Hugging Face model ID used for transformation.")] = ""


class ImageToTextResponse(msgspec.Struct):
    """Response model for text generation."""

    text: Annotated[str, Meta(description="The generated text.")]


class SegmentAnything2Params(msgspec.Struct, kw_only=True):
    image: Annotated[File, Meta(description="Image to segment.")]
    model_id: Annotated[str, Meta(description="Hugging Face model ID used for image generation.")] = ""
    point_coords: Annotated[str | None, Meta(description=(
        "Nx2 array of point prompts to the model, where each point is in (X,Y) in pixels."))] = None
    point_labels: Annotated[str | None, Meta(description=(
        "Labels for the point prompts, where 1 indicates a foreground point and 0 indicates a background "
        "point."))] = None
    box: Annotated[str | None, Meta(description="A length 4 array given as a box prompt to the model, in XYXY "
                                                "format.")] = None
    mask_input: Annotated[str | None, Meta(description=(
        "A low-resolution mask input to the model, typically from a previous prediction iteration, with the form "
        "1xHxW (H=W=256 for SAM)."))] = None
    multimask_output: Annotated[bool, Meta(description=(
        "If true, the model will return three masks for ambiguous input prompts, often producing better masks "
        "than a single prediction."))] = True
    return_logits: Annotated[bool, Meta(description=(
        "If true, returns un-thresholded mask logits instead of a binary mask."))] = True
    normalize_coords: Annotated[bool, Meta(description=(
        "If true, the point coordinates will be normalized to the range [0,1], with point_coords expected to be "
        "with respect to image dimensions."))] = True


class MasksResponse(msgspec.Struct):
    """Response model for object segmentation (arrays as the runner sends them: Python list text)."""

    masks: Annotated[str, Meta(description="The generated masks.")]
    scores: Annotated[str, Meta(description="The model's confidence scores for each generated mask.")]
    logits: Annotated[str, Meta(description="The raw, unnormalized predictions (logits) for the masks.")]

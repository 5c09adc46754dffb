"""Wire types of the diffusion pipelines, as the Livepeer runner and gateway specs define them
(field names, defaults, multipart fields). Bounds are warmgate's: out of range is a 422."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from warmgate.core.functions.spec import File

__all__ = [
    "ImageResponse",
    "ImageToImageParams",
    "ImageToVideoParams",
    "Media",
    "RunnerVideoResponse",
    "TextToImageParams",
    "UpscaleParams",
    "VideoResponse",
]

Dimension = Annotated[int, Meta(ge=8, le=8192, multiple_of=8, description="Pixels; a multiple of 8.")]
Steps = Annotated[int, Meta(ge=1, le=1000)]
Guidance = Annotated[float, Meta(ge=0, le=100)]
Seed = Annotated[int, Meta(ge=0, le=2**62)]
ImageCount = Annotated[int, Meta(ge=1, le=16)]
Prompt = Annotated[str, Meta(min_length=1)]

_LORAS = ('A LoRA (Low-Rank Adaptation) model and its corresponding weight for image generation. Example: '
          '{ "latent-consistency/lcm-lora-sdxl": 1.0, "nerijs/pixel-art-xl": 1.2}.')
_SAFETY = "Perform a safety check to estimate if generated images could be offensive or harmful."
_STEPS = ("Number of denoising steps. More steps usually lead to higher quality images but slower inference. "
          "Modulated by strength.")
_GUIDANCE = ("Encourages model to generate images closely linked to the text prompt (higher values may reduce "
             "image quality).")
_NEGATIVE = "Text prompt(s) to guide what to exclude from image generation. Ignored if guidance_scale < 1."


class TextToImageParams(msgspec.Struct, kw_only=True):
    prompt: Annotated[Prompt, Meta(description="Text prompt(s) to guide image generation. Separate multiple prompts "
                                               "with '|' if supported by the model.")]
    model_id: Annotated[str, Meta(description="Hugging Face model ID used for image generation.")] = ""
    loras: Annotated[str, Meta(description=_LORAS)] = ""
    height: Annotated[Dimension, Meta(description="The height in pixels of the generated image.")] = 576
    width: Annotated[Dimension, Meta(description="The width in pixels of the generated image.")] = 1024
    guidance_scale: Annotated[Guidance, Meta(description=_GUIDANCE)] = 7.5
    negative_prompt: Annotated[str, Meta(description=_NEGATIVE)] = ""
    safety_check: Annotated[bool, Meta(description=_SAFETY)] = True
    seed: Annotated[Seed | None, Meta(description="Seed for random number generation.")] = None
    num_inference_steps: Annotated[Steps, Meta(description=_STEPS)] = 50
    num_images_per_prompt: Annotated[ImageCount, Meta(description="Number of images to generate per prompt.")] = 1


class ImageToImageParams(msgspec.Struct, kw_only=True):
    prompt: Annotated[Prompt, Meta(description="Text prompt(s) to guide image generation.")]
    image: Annotated[File, Meta(description="Uploaded image to modify with the pipeline.")]
    model_id: Annotated[str, Meta(description="Hugging Face model ID used for image generation.")] = ""
    loras: Annotated[str, Meta(description=_LORAS)] = ""
    strength: Annotated[float, Meta(ge=0, le=1, description="Degree of transformation applied to the reference "
                                                            "image (0 to 1).")] = 0.8
    guidance_scale: Annotated[Guidance, Meta(description=_GUIDANCE)] = 7.5
    image_guidance_scale: Annotated[Guidance, Meta(description="Degree to which the generated image is pushed "
                                                               "towards the initial image.")] = 1.5
    negative_prompt: Annotated[str, Meta(description=_NEGATIVE)] = ""
    safety_check: Annotated[bool, Meta(description=_SAFETY)] = True
    seed: Annotated[Seed | None, Meta(description="Seed for random number generation.")] = None
    num_inference_steps: Annotated[Steps, Meta(description=_STEPS)] = 100
    num_images_per_prompt: Annotated[ImageCount, Meta(description="Number of images to generate per prompt.")] = 1


class ImageToVideoParams(msgspec.Struct, kw_only=True):
    image: Annotated[File, Meta(description="Uploaded image to generate a video from.")]
    model_id: Annotated[str, Meta(description="Hugging Face model ID used for video generation.")] = ""
    height: Annotated[Dimension, Meta(description="The height in pixels of the generated video.")] = 576
    width: Annotated[Dimension, Meta(description="The width in pixels of the generated video.")] = 1024
    fps: Annotated[int, Meta(ge=1, le=120, description="The frames per second of the generated video.")] = 6
    motion_bucket_id: Annotated[int, Meta(ge=0, le=1023, description=(
        "Used for conditioning the amount of motion for the generation. The higher the number the more motion "
        "will be in the video."))] = 127
    noise_aug_strength: Annotated[float, Meta(ge=0, le=10, description=(
        "Amount of noise added to the conditioning image. Higher values reduce resemblance to the conditioning "
        "image and increase motion."))] = 0.02
    safety_check: Annotated[bool, Meta(description=_SAFETY)] = True
    seed: Annotated[Seed | None, Meta(description="Seed for random number generation.")] = None
    num_inference_steps: Annotated[Steps, Meta(description=_STEPS)] = 25


class UpscaleParams(msgspec.Struct, kw_only=True):
    prompt: Annotated[str, Meta(description="Text prompt(s) to guide upscaled image generation.")]
    image: Annotated[File, Meta(description="Uploaded image to modify with the pipeline.")]
    model_id: Annotated[str, Meta(description="Hugging Face model ID used for upscaled image generation.")] = ""
    safety_check: Annotated[bool, Meta(description=_SAFETY)] = True
    seed: Annotated[Seed | None, Meta(description="Seed for random number generation.")] = None
    num_inference_steps: Annotated[Steps, Meta(description=_STEPS)] = 75


class Media(msgspec.Struct):
    """A media object containing information about the generated media."""

    url: Annotated[str, Meta(description="The URL where the media can be accessed.")]
    seed: Annotated[int, Meta(description="The seed used to generate the media.")]
    nsfw: Annotated[bool, Meta(description="Whether the media was flagged as NSFW.")]


class ImageResponse(msgspec.Struct):
    """Response model for image generation."""

    images: Annotated[list[Media], Meta(description="The generated images.")]


class VideoResponse(msgspec.Struct):
    """The gateway's video shape (what the livepeer-ai SDK parses): one mp4 data URL per video."""

    images: Annotated[list[Media], Meta(description="The generated videos (data:video/mp4 URLs).")]


class RunnerVideoResponse(msgspec.Struct):
    """The runner's video shape: PNG frames per video (function option ``video_output: frames``)."""

    frames: Annotated[list[list[Media]], Meta(description="The generated video frames.")]

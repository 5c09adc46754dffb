"""Tiny random-weight model builders for tests: each writes a complete model directory that the
real ``from_pretrained(path)`` loads. Their outputs are noise; assert on shapes, not content."""

from warmgate.plugins.audio.demo import build_tiny_speecht5, build_tiny_vits, build_tiny_whisper
from warmgate.plugins.diffusion.demo import (
    build_tiny_lora,
    build_tiny_pix2pix,
    build_tiny_safety_checker,
    build_tiny_sd,
    build_tiny_sd_turbo,
    build_tiny_sdxl,
    build_tiny_svd,
    build_tiny_upscaler,
)
from warmgate.plugins.llm.demo import build_tiny_chat_model
from warmgate.plugins.vision.demo import build_tiny_blip, build_tiny_sam2

__all__ = [
    "build_tiny_blip",
    "build_tiny_chat_model",
    "build_tiny_lora",
    "build_tiny_pix2pix",
    "build_tiny_safety_checker",
    "build_tiny_sam2",
    "build_tiny_sd",
    "build_tiny_sd_turbo",
    "build_tiny_sdxl",
    "build_tiny_speecht5",
    "build_tiny_svd",
    "build_tiny_upscaler",
    "build_tiny_vits",
    "build_tiny_whisper",
]

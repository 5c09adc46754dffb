"""Tiny diffusers models, built once per test session and loaded through ``from_pretrained``."""

from pathlib import Path

import pytest

from warmgate.core.plugins import get_pipelines


@pytest.fixture(scope="session")
def tiny(tiny_model_dir, tmp_path_factory):
    """Paths of the tiny models: the four demo models plus SDXL, SDXL-Lightning, a LoRA and a
    safety checker."""
    from safetensors.torch import save_file

    from warmgate.testing import models as demo

    pipelines = get_pipelines()
    paths = {name: str(tiny_model_dir(pipelines[name])) for name in
             ("text-to-image", "image-to-image", "image-to-video", "upscale")}
    root = tmp_path_factory.mktemp("diffusion-extra")
    for name in ("sdxl", "safety_checker"):
        getattr(demo, f"build_tiny_{name}")(root / name)
        paths[name] = str(root / name)
    demo.build_tiny_lora(root / "lora", Path(paths["text-to-image"]))
    paths["lora"] = str(root / "lora")
    # a local stand-in for the ByteDance/SDXL-Lightning repo: n-step UNet weights for the SDXL base
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(root / "sdxl", subfolder="unet")
    (root / "SDXL-Lightning").mkdir()
    save_file(unet.state_dict(), root / "SDXL-Lightning" / "sdxl_lightning_4step_unet.safetensors")
    paths["lightning"] = str(root / "SDXL-Lightning-4step")
    return paths

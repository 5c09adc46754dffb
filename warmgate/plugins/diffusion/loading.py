"""Turning a model id and a function's options into a ready diffusers pipeline: device and dtype,
the model-family cases users rely on, and the optimisations a function config asks for."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from warmgate.core.http.errors import ConfigError

__all__ = ["Family", "apply_optimizations", "choose_device", "family_of", "load_lightning", "pretrained_kwargs"]

_log = structlog.get_logger("warmgate.diffusion")

LIGHTNING_REPO = "ByteDance/SDXL-Lightning"
LIGHTNING_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
_DTYPES = ("float16", "bfloat16", "float32")


@dataclass(frozen=True)
class Family:
    """What a model family needs at call time."""

    name: str
    guidance_scale: float | None = None
    """Forced guidance (distilled models are trained without CFG)."""
    steps: int | None = None
    """Forced step count (SDXL-Lightning's n-step UNets only work with n steps)."""
    negative_prompt: bool = True
    """False where the model takes no negative prompt (FLUX)."""


def family_of(model_id: str) -> Family:
    """The family of a Hugging Face id (or a local path named like one)."""
    lowered = model_id.lower()
    if "sdxl-lightning" in lowered:
        return Family("sdxl-lightning", guidance_scale=0.0, steps=lightning_steps(model_id))
    if "lightning" in lowered:
        return Family("lightning")
    if "turbo" in lowered:
        return Family("turbo", guidance_scale=0.0)
    if "flux" in lowered:
        return Family("flux", guidance_scale=0.0 if "schnell" in lowered else None, negative_prompt=False)
    if "stable-diffusion-3" in lowered:
        return Family("sd3")
    return Family("default")


def lightning_steps(model_id: str) -> int:
    """``ByteDance/SDXL-Lightning-4step`` → 4; the bare id means the 2-step UNet."""
    match = re.search(r"(\d)step", model_id.lower())
    return int(match.group(1)) if match else 2


def choose_device(options: dict[str, Any], model_id: str = "") -> tuple[str, Any]:
    """``(device, dtype)``: CUDA with fp16 (bf16 for FLUX, which overflows in fp16) when present,
    else CPU with fp32; ``device`` and ``torch_dtype`` options override."""
    import torch

    device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    name = options.get("torch_dtype")
    if name is None:
        name = "float32" if device == "cpu" else "bfloat16" if family_of(model_id).name == "flux" else "float16"
    if name not in _DTYPES:
        raise ConfigError("diffusion function options", "torch_dtype", f"one of {', '.join(_DTYPES)}, got {name!r}")
    return device, getattr(torch, name)


def pretrained_kwargs(options: dict[str, Any], dtype: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": dtype}
    if options.get("variant"):
        kwargs["variant"] = options["variant"]
    return kwargs


def load_lightning(model_id: str, options: dict[str, Any], dtype: Any) -> Any:
    """SDXL-Lightning: the SDXL base with ByteDance's n-step UNet and trailing Euler timesteps.

    ``model_id`` is ``ByteDance/SDXL-Lightning`` (optionally ``-1step``/``-2step``/``-4step``/
    ``-8step``) or a local directory holding the ``sdxl_lightning_*_unet.safetensors`` files;
    the ``base_model`` option replaces the SDXL base.
    """
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from safetensors.torch import load_file

    steps = lightning_steps(model_id)
    filename = f"sdxl_lightning_{steps}step_unet{'_x0' if steps == 1 else ''}.safetensors"
    repo = re.sub(r"-\dstep$", "", model_id, flags=re.IGNORECASE)
    if Path(repo).is_dir():
        weights = Path(repo) / filename
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} does not exist")
    else:
        from huggingface_hub import hf_hub_download

        weights = Path(hf_hub_download(LIGHTNING_REPO if "/" not in repo else repo, filename))
    base = options.get("base_model", LIGHTNING_BASE)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(base, subfolder="unet"))
    unet.load_state_dict(load_file(weights))
    pipe = StableDiffusionXLPipeline.from_pretrained(base, unet=unet.to(dtype), **pretrained_kwargs(options, dtype))
    extra = {"prediction_type": "sample"} if steps == 1 else {}
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing", **extra)
    return pipe


def lightning_scheduler(pipe: Any) -> None:
    """Merged Lightning checkpoints (RealVisXL Lightning) want few steps with DPM++ SDE Karras."""
    from diffusers import DPMSolverMultistepScheduler

    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True,
                                                             algorithm_type="sde-dpmsolver++")


def apply_optimizations(pipe: Any, options: dict[str, Any], device: str) -> Any:
    """Place the pipeline and apply only the optimisations the function config sets:
    ``cpu_offload`` (``model``/``sequential``), ``attention_slicing``, ``vae_slicing``,
    ``vae_tiling``, ``torch_compile``."""
    offload = options.get("cpu_offload")
    if offload in (True, "model"):
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload not in (None, False):
        raise ConfigError("diffusion function options", "cpu_offload", f"'model' or 'sequential', got {offload!r}")
    else:
        pipe.to(device)
    if options.get("attention_slicing"):
        pipe.enable_attention_slicing()
    vae = getattr(pipe, "vae", None)
    if options.get("vae_slicing") and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if options.get("vae_tiling") and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    if options.get("torch_compile"):
        import torch

        for name in ("unet", "transformer"):
            module = getattr(pipe, name, None)
            if module is not None:
                setattr(pipe, name, torch.compile(module, mode=options.get("torch_compile_mode", "reduce-overhead")))
                _log.info("torch_compile", component=name)
    pipe.set_progress_bar_config(disable=True)  # warmgate logs progress itself
    return pipe

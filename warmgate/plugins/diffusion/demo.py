"""Tiny random-weight diffusers models, built locally in about a second each.

Their pictures are noise; they exist so the demo profile and the tests run the real diffusers
loading and generation code (``from_pretrained(path)``) with no GPU and no model hub. Every
builder writes a complete pipeline directory with ``save_pretrained``.

Each VAE has the real architecture's latent scale (8 for SD, SDXL, InstructPix2Pix and SVD; 4
for the x4 upscaler, whose UNet runs at the input's size), and attention sits only at the
smaller latent levels, so a request at the spec's default sizes (1024x576) answers in seconds
on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "build_tiny_lora",
    "build_tiny_pix2pix",
    "build_tiny_safety_checker",
    "build_tiny_sd",
    "build_tiny_sd_turbo",
    "build_tiny_sdxl",
    "build_tiny_svd",
    "build_tiny_upscaler",
]


def _imports() -> Any:
    try:
        import diffusers
        import torch
        import transformers
    except ImportError as exc:
        raise ImportError(f"the diffusion demo models need the [diffusion] extra "
                          f"(pip install torch, then pip install 'warmgate[diffusion]'): {exc}") from exc
    torch.manual_seed(0)
    return torch, diffusers, transformers


def _clip_tokenizer() -> Any:
    """A CLIP BPE tokenizer over the byte alphabet (no merges): no vocabulary download needed."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    alphabet = sorted(ByteLevel.alphabet())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=77)


def _clip_text_encoder(tokenizer: Any, *, projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _unet(**overrides: Any) -> Any:
    from diffusers import UNet2DConditionModel

    """Four levels, cross-attention (one head) only at the smallest: at 1024x576 (a 128x72
    latent) it attends over 16x9 positions, where attention at 64x36 took seconds a step."""
    config: dict[str, Any] = dict(
        block_out_channels=(8, 8, 16, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D",) * 3 + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * 3,
        cross_attention_dim=32, norm_num_groups=4, attention_head_dim=1,
    )
    return UNet2DConditionModel(**(config | overrides))


SD_VAE_BLOCKS = (4, 4, 8, 8)
"""Four levels: latent scale 8, as the real SD/SDXL VAEs."""


def _vae(blocks: tuple[int, ...] = SD_VAE_BLOCKS, **overrides: Any) -> Any:
    from diffusers import AutoencoderKL

    """No attention in the middle block: at a 128x72 latent it was most of the decode time."""
    return AutoencoderKL(block_out_channels=list(blocks), latent_channels=4, norm_num_groups=4,
                         down_block_types=["DownEncoderBlock2D"] * len(blocks),
                         up_block_types=["UpDecoderBlock2D"] * len(blocks), mid_block_add_attention=False,
                         **overrides)


def _ddim(**overrides: Any) -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, **overrides)


def build_tiny_sd(directory: Path) -> None:
    """Stable Diffusion 1.x layout (VAE scale factor 8, as the real one)."""
    _, diffusers, _ = _imports()
    tokenizer = _clip_tokenizer()
    diffusers.StableDiffusionPipeline(
        vae=_vae(), text_encoder=_clip_text_encoder(tokenizer), tokenizer=tokenizer, unet=_unet(), scheduler=_ddim(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(directory)


def build_tiny_sd_turbo(directory: Path) -> None:
    """An sd-turbo layout for live video: VAE scale factor 8 (as the real ones), so a 512 px
    frame is a 64x64 latent and a frame takes tens of milliseconds on a CPU; Euler with
    trailing timesteps, the turbo schedulers' few-step spacing."""
    _, diffusers, _ = _imports()
    tokenizer = _clip_tokenizer()
    diffusers.StableDiffusionPipeline(
        vae=_vae(), text_encoder=_clip_text_encoder(tokenizer), tokenizer=tokenizer, unet=_unet(),
        scheduler=diffusers.EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                   beta_end=0.012, timestep_spacing="trailing", steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(directory)


def build_tiny_sdxl(directory: Path) -> None:
    """SDXL layout: two text encoders, so ``a|b`` prompts reach ``prompt_2``."""
    _, diffusers, _ = _imports()
    tokenizer = _clip_tokenizer()
    unet = _unet(addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, use_linear_projection=True)
    diffusers.StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=_clip_text_encoder(tokenizer), text_encoder_2=_clip_text_encoder(tokenizer, projection=True),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet,
        scheduler=diffusers.EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                                   steps_offset=1),
    ).save_pretrained(directory)


def build_tiny_pix2pix(directory: Path) -> None:
    """InstructPix2Pix: the UNet also sees the input image's latents (8 input channels)."""
    _, diffusers, _ = _imports()
    tokenizer = _clip_tokenizer()
    diffusers.StableDiffusionInstructPix2PixPipeline(
        vae=_vae(), text_encoder=_clip_text_encoder(tokenizer), tokenizer=tokenizer, unet=_unet(in_channels=8),
        scheduler=diffusers.EulerAncestralDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                            beta_end=0.012, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(directory)


def build_tiny_upscaler(directory: Path) -> None:
    """The x4 upscaler layout: a 32 px input comes back at 128 px. Its VAE scales by 4, as the
    real one, so the UNet runs at the input's size: attention only in its middle block (a
    eighth of the input's size), or a 512 px input would attend over 65,536 positions."""
    _, diffusers, _ = _imports()
    tokenizer = _clip_tokenizer()
    unet = _unet(in_channels=7, num_class_embeds=1000, down_block_types=("DownBlock2D",) * 4,
                 up_block_types=("UpBlock2D",) * 4)
    diffusers.StableDiffusionUpscalePipeline(
        vae=_vae((8, 8, 16), scaling_factor=0.08333),
        text_encoder=_clip_text_encoder(tokenizer), tokenizer=tokenizer, unet=unet,
        low_res_scheduler=diffusers.DDPMScheduler(beta_schedule="scaled_linear"),
        scheduler=_ddim(prediction_type="v_prediction"), max_noise_level=350,
    ).save_pretrained(directory)


def build_tiny_svd(directory: Path) -> None:
    """Stable Video Diffusion with 4-frame UNet (attention only at its smallest level) and a
    VAE of latent scale 8, as the real one; its image encoder takes 224 px as SVD always
    resizes to it."""
    _, diffusers, transformers = _imports()
    unet = diffusers.UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 32, 32, 64), layers_per_block=1, in_channels=8, out_channels=4,
        down_block_types=("DownBlockSpatioTemporal",) * 3 + ("CrossAttnDownBlockSpatioTemporal",),
        up_block_types=("CrossAttnUpBlockSpatioTemporal",) + ("UpBlockSpatioTemporal",) * 3, cross_attention_dim=32,
        num_attention_heads=(1, 1, 1, 2), addition_time_embed_dim=8, projection_class_embeddings_input_dim=24,
        num_frames=4,
    )
    vae = diffusers.AutoencoderKLTemporalDecoder(block_out_channels=[32] * 4, layers_per_block=1,
                                                 down_block_types=["DownEncoderBlock2D"] * 4)
    encoder = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=224, patch_size=32,
        intermediate_size=37))
    scheduler = diffusers.EulerDiscreteScheduler(
        prediction_type="v_prediction", timestep_type="continuous", use_karras_sigmas=True, sigma_min=0.002,
        sigma_max=700.0, steps_offset=1, timestep_spacing="leading", interpolation_type="linear",
        beta_schedule="scaled_linear")
    diffusers.StableVideoDiffusionPipeline(
        vae=vae, image_encoder=encoder, unet=unet, scheduler=scheduler,
        feature_extractor=_clip_image_processor(),
    ).save_pretrained(directory)


def _clip_image_processor(size: int = 224) -> Any:
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(crop_size=size, size=size)


def build_tiny_safety_checker(directory: Path) -> None:
    """A random-weight ``StableDiffusionSafetyChecker`` and its image processor in one directory
    (configure it as a function's ``safety_checker`` option)."""
    _, _, transformers = _imports()
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    config = transformers.CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=32,
    )
    StableDiffusionSafetyChecker(config).save_pretrained(directory)
    _clip_image_processor(32).save_pretrained(directory)


def build_tiny_lora(directory: Path, base: Path) -> None:
    """A LoRA for the UNet of the tiny SD model at ``base``, saved as ``pytorch_lora_weights.safetensors``."""
    torch, diffusers, _ = _imports()
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = diffusers.UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():  # gaussian init leaves B at zero: make the LoRA change the output
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    diffusers.StableDiffusionPipeline.save_lora_weights(directory, unet_lora_layers=get_peft_model_state_dict(unet))

"""Tiny random-weight vision models (a BLIP captioner, SAM 2), built locally in a second or two.
Their outputs are noise; they exist to run the real transformers loading and inference code."""

from __future__ import annotations

import string
from pathlib import Path

__all__ = ["build_tiny_blip", "build_tiny_sam2"]


def build_tiny_blip(directory: Path) -> None:
    try:
        import torch
        from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
        from transformers.models.blip.image_processing_blip import BlipImageProcessor
    except ImportError as exc:
        raise ImportError(f"the vision demo model needs the [vision] extra "
                          f"(pip install torch, then pip install 'warmgate[vision]'): {exc}") from exc

    torch.manual_seed(0)
    words = ["a", "photo", "of", "the", "cat", "dog", "red", "blue", "picture"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *string.ascii_lowercase, *string.digits,
             *string.punctuation, *(f"##{c}" for c in string.ascii_lowercase), *words]
    vocab = list(dict.fromkeys(vocab))
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, bos_token="[DEC]")
    processor = BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    config = BlipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, encoder_hidden_size=32, bos_token_id=ids("[DEC]"),
                         sep_token_id=ids("[SEP]"), eos_token_id=ids("[SEP]"), pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=32,
    )
    BlipForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)


def build_tiny_sam2(directory: Path) -> None:
    """SAM 2 (Hiera backbone) at 128 px input, 32 px mask logits: the transformers test config."""
    import torch
    from transformers import Sam2Config, Sam2Model
    from transformers.models.sam2.configuration_sam2 import (
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    torch.manual_seed(0)
    backbone = Sam2HieraDetConfig(hidden_size=12, image_size=128, patch_stride=4, patch_kernel_size=7, patch_padding=3,
                                  blocks_per_stage=[1, 2, 7, 2], embed_dim_per_stage=[12, 24, 48, 96],
                                  num_attention_heads_per_stage=[1, 2, 4, 8])
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[96, 48, 24, 12],
                              backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]], fpn_hidden_size=32)
    config = Sam2Config(vision_config=vision, prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=32, image_size=128),
                        mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=32))
    Sam2Model(config).save_pretrained(directory)

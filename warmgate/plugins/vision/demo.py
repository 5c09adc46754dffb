"""A tiny random-weight BLIP captioner, built locally in a second. Its captions are noise."""

from __future__ import annotations

import string
from pathlib import Path

__all__ = ["build_tiny_blip"]


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

"""A tiny random-weight sentence encoder (WordPiece + 2-layer BERT + a sentence-transformers
pooling config), built locally in a second. Its vectors are noise; it exists so the demo profile
and the tests run the real tokenizer, forward pass and pooling with no model hub."""

from __future__ import annotations

import json
import string
from pathlib import Path

__all__ = ["CONTEXT_LENGTH", "HIDDEN_SIZE", "build_tiny_embedding_model"]

HIDDEN_SIZE = 32
CONTEXT_LENGTH = 128
_WORDS = ["the", "quick", "brown", "fox", "hello", "world", "warm", "gate", "model", "embed", "search", "query"]

_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


def _vocab() -> dict[str, int]:
    chars = string.ascii_lowercase + string.digits + string.punctuation
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *_WORDS]
    return {token: index for index, token in enumerate(tokens)}


def build_tiny_embedding_model(directory: Path) -> None:
    try:
        import torch
        from transformers import BertConfig, BertModel, BertTokenizer
    except ImportError as exc:
        raise ImportError(f"the embeddings demo model needs the [llm] extra "
                          f"(pip install torch, then pip install 'warmgate[llm]'): {exc}") from exc

    torch.manual_seed(0)
    tokenizer = BertTokenizer(vocab=_vocab(), model_max_length=CONTEXT_LENGTH)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN_SIZE, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=CONTEXT_LENGTH,
                        pad_token_id=tokenizer.pad_token_id)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "modules.json").write_text(json.dumps(_MODULES, indent=2))
    (directory / "1_Pooling").mkdir()
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": HIDDEN_SIZE, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False, "include_prompt": True,
    }, indent=2))
    (directory / "2_Normalize").mkdir()

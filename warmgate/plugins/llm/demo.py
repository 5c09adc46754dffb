"""A tiny random-weight chat model (byte-level BPE + 2-layer Llama), built locally in seconds.

Its output is noise; it exists so the demo profile and the tests run the real transformers
loading, chat-template and generation code with no GPU and no model hub.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["build_tiny_chat_model"]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is a tiny language model built for tests",
    "warmgate serves models that load on demand and scale to zero",
    "you are a helpful assistant. answer briefly and politely.",
    "what is the capital of france? paris is the capital of france.",
    "one two three four five six seven eight nine ten",
    "stream tokens as they arrive, then stop when the answer is done",
    "system user assistant tool message content role",
] * 5


def build_tiny_chat_model(directory: Path) -> None:
    try:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    except ImportError as exc:
        raise ImportError(f"the LLM demo model needs the [llm] extra "
                          f"(pip install torch, then pip install 'warmgate[llm]'): {exc}") from exc

    torch.manual_seed(0)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        bos_token="<|im_start|>", chat_template=CHAT_TEMPLATE)
    # head_dim = hidden_size / num_attention_heads = 32: the smallest head size vLLM's CPU attention
    # kernels support (head_dim 8 loads there, then fails its first request), so vLLM serves it too.
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)

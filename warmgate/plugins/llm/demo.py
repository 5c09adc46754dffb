"""A tiny random-weight chat model (byte-level BPE + 2-layer Llama), built locally in seconds.

Its output is noise; it exists so the demo profile and the tests run the real transformers
loading, chat-template and generation code with no GPU and no model hub.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["build_tiny_chat_model", "build_tiny_vision_model"]

CHAT_TEMPLATE = """\
{%- if tools %}<|im_start|>system
{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}

{% endif %}# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0]['role'] == 'system' %}<|im_start|>system
{{ messages[0]['content'] }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message['role'] == 'system' and loop.first %}
{%- elif message['role'] == 'assistant' %}<|im_start|>assistant
{{ message['content'] or '' }}
{%- for call in message['tool_calls'] or [] %}
{% if message['content'] or not loop.first %}
{% endif %}<tool_call>
{"name": "{{ call['function']['name'] }}", "arguments": {{ call['function']['arguments'] | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message['role'] == 'tool' %}<|im_start|>user
<tool_response>
{{ message['content'] }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""
"""Qwen 2.5's way of teaching tools (Hermes ``<tool_call>`` tags), cut down: the demo model
renders tool definitions, the calls of earlier turns and their results like the real ones."""

_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is a tiny language model built for tests",
    "warmgate serves models that load on demand and scale to zero",
    "you are a helpful assistant. answer briefly and politely.",
    "what is the capital of france? paris is the capital of france.",
    "one two three four five six seven eight nine ten",
    "stream tokens as they arrive, then stop when the answer is done",
    "system user assistant tool message content role",
    # what tool definitions and calls are made of, so that one takes tens of tokens, not hundreds
    '{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city",',
    '"parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"},',
    '"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer"}},',
    '"required": ["city"], "additionalProperties": false}}}',
    '{"type": "array", "items": {"type": "number"}, "minimum": 0, "maximum": 100, "default": null, "boolean"}',
    "<tools></tools> <tool_call></tool_call> <tool_response></tool_response> # Tools",
    "You may call one or more functions to assist with the user query.",
    "You are provided with function signatures within XML tags:",
    "For each function call, return a json object with function name and arguments within",
    '{"name": <function-name>, "arguments": <args-json-object>}',
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
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        bos_token="<|im_start|>", chat_template=CHAT_TEMPLATE)
    # 4096 positions: several tool definitions plus a few hundred generated tokens.
    # head_dim = hidden_size / num_attention_heads = 32: the smallest head size vLLM's CPU attention
    # kernels support (head_dim 8 loads there, then fails its first request), so vLLM serves it too.
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


VISION_CHAT_TEMPLATE = """\
{%- for message in messages %}<|im_start|>{{ message['role'] }}
{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}\
{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}\
{% endfor %}{% endif %}<|im_end|>
{% endfor %}{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""
"""ChatML with ``<image>`` where an image part is: the processor widens it to the image's tokens."""


def build_tiny_vision_model(directory: Path) -> None:
    """A tiny random-weight LLaVA: the chat model's tokenizer plus ``<image>``, a one-layer CLIP
    vision tower on 32 px images (16 image tokens) and a two-layer Llama, with its processor, all
    loadable offline by ``AutoProcessor`` and ``AutoModelForImageTextToText``."""
    try:
        import torch
        from transformers import (
            AutoTokenizer,
            CLIPImageProcessor,
            CLIPVisionConfig,
            LlamaConfig,
            LlavaConfig,
            LlavaForConditionalGeneration,
            LlavaProcessor,
        )
    except ImportError as exc:
        raise ImportError(f"the LLM demo model needs the [llm] extra "
                          f"(pip install torch, then pip install 'warmgate[llm]'): {exc}") from exc

    build_tiny_chat_model(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    torch.manual_seed(0)
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                  crop_size={"height": 32, "width": 32}),
                               tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=VISION_CHAT_TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=1,
                              image_size=32, patch_size=8, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    LlavaForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)

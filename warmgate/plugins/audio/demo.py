"""Tiny random-weight speech models, built locally in a second or two. Their output is noise;
they exist so the demo profile and the tests run the real transformers loading and decoding."""

from __future__ import annotations

from pathlib import Path

__all__ = ["build_tiny_speecht5", "build_tiny_vits", "build_tiny_whisper"]

_LANGUAGES = ("<|en|>", "<|de|>", "<|fr|>")
_SPECIALS = ("<|startoftranscript|>", *_LANGUAGES, "<|translate|>", "<|transcribe|>", "<|startoflm|>",
             "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>")


def _imports() -> tuple:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ImportError(f"the audio demo models need the [audio] extra "
                          f"(pip install torch, then pip install 'warmgate[audio]'): {exc}") from exc
    torch.manual_seed(0)
    return torch, transformers


def build_tiny_whisper(directory: Path) -> None:
    """Whisper with a byte-level vocabulary and the 1501 timestamp tokens, so segment and word
    timestamps decode as with the real models."""
    _, transformers = _imports()
    from tokenizers import AddedToken
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    tokenizer = transformers.WhisperTokenizer(vocab={c: i for i, c in enumerate(alphabet)}, merges=[],
                                              pad_token="<|endoftext|>", unk_token="<|endoftext|>",
                                              bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    # <|notimestamps|> must be the last special token: ids after it are read as timestamps
    tokenizer.add_special_tokens({"extra_special_tokens": list(_SPECIALS)})
    tokenizer.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", special=False) for i in range(1501)])
    features = transformers.WhisperFeatureExtractor(feature_size=80)
    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    config = transformers.WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=ids("<|startoftranscript|>"),
        eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
    )
    model = transformers.WhisperForConditionalGeneration(config)
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"), eos_token_id=eot, pad_token_id=eot,
        no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
        is_multilingual=True, lang_to_id={lang: ids(lang) for lang in _LANGUAGES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        max_initial_timestamp_index=50, begin_suppress_tokens=[eot], suppress_tokens=[], alignment_heads=[[0, 0]],
    )
    model.save_pretrained(directory)
    transformers.WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(directory)


def build_tiny_vits(directory: Path) -> None:
    """VITS (the MMS text-to-speech architecture) over a character vocabulary, no phonemizer."""
    import json
    import string

    _, transformers = _imports()
    directory.mkdir(parents=True, exist_ok=True)
    symbols = ["<pad>", "<unk>", " ", *string.ascii_lowercase, *string.digits, *".,!?;:'-"]
    (directory / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(symbols)}))
    tokenizer = transformers.VitsTokenizer(str(directory / "vocab.json"), phonemize=False, add_blank=True)
    config = transformers.VitsConfig(
        vocab_size=len(symbols), hidden_size=16, num_hidden_layers=1, ffn_dim=32, flow_size=16, spectrogram_bins=33,
        upsample_initial_channel=32, upsample_rates=[8, 8, 4], upsample_kernel_sizes=[16, 16, 8],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], duration_predictor_filter_channels=16,
        duration_predictor_num_flows=1, prior_encoder_num_flows=1, prior_encoder_num_wavenet_layers=1,
        posterior_encoder_num_wavenet_layers=1, depth_separable_num_layers=1,
    )
    transformers.VitsModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def build_tiny_speecht5(directory: Path) -> None:
    """SpeechT5 text-to-speech with a character SentencePiece vocabulary, and its HiFi-GAN vocoder
    in ``directory/vocoder`` (configure it as the function's ``vocoder`` option)."""
    import io

    import sentencepiece

    _, transformers = _imports()
    directory.mkdir(parents=True, exist_ok=True)
    corpus = ["hello world this is a tiny speech model", "the quick brown fox jumps over the lazy dog",
              "one two three four five six seven eight nine ten"] * 10
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=model, model_type="char",
                                             vocab_size=32, bos_id=0, pad_id=1, eos_id=2, unk_id=3,
                                             minloglevel=2)
    (directory / "spm_char.model").write_bytes(model.getvalue())
    tokenizer = transformers.SpeechT5Tokenizer(str(directory / "spm_char.model"))
    config = transformers.SpeechT5Config(
        vocab_size=len(tokenizer) + 1, hidden_size=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16, speaker_embedding_dim=8,
        speech_decoder_prenet_units=32, speech_decoder_postnet_units=32, speech_decoder_postnet_layers=2,
        conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, max_speech_positions=600, max_text_positions=100,
    )
    transformers.SpeechT5ForTextToSpeech(config).save_pretrained(directory)
    transformers.SpeechT5Processor(transformers.SpeechT5FeatureExtractor(num_mel_bins=16), tokenizer).save_pretrained(
        directory)
    transformers.SpeechT5HifiGan(transformers.SpeechT5HifiGanConfig(
        model_in_dim=16, upsample_initial_channel=16, upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]])).save_pretrained(directory / "vocoder")

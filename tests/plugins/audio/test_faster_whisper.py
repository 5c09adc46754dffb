"""audio-to-text on the faster-whisper backend: the tiny Whisper converted to CTranslate2."""

import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.plugins import get_pipelines

from .test_audio_to_text import encode_audio, transcribe


@pytest.fixture(scope="session")
def tiny_whisper_ct2(tiny_model_dir, tmp_path_factory):
    from ctranslate2.converters import TransformersConverter

    source = tiny_model_dir(get_pipelines()["audio-to-text"])
    target = tmp_path_factory.mktemp("whisper-ct2") / "model"
    TransformersConverter(str(source), copy_files=["tokenizer.json"]).convert(str(target))
    return str(target)


@pytest.fixture
def fast(warmgate_server, tiny_whisper_ct2):
    config = FunctionConfig(pipeline="audio-to-text", model_id=tiny_whisper_ct2,
                            options={"backend": "faster-whisper", "compute_type": "float32", "language": "en"})
    _, client = warmgate_server(Settings(functions=[config]))
    return client


@pytest.mark.parametrize(("mode", "expect_chunks"), [("true", True), ("word", True), ("false", False)])
def test_faster_whisper_answers_in_the_runner_shape(fast, mode, expect_chunks):
    r = transcribe(fast, encode_audio("mp3", "libmp3lame", 44100, seconds=3), "speech.mp3", return_timestamps=mode)
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["text"], str)
    if not expect_chunks:
        assert body["chunks"] == []
    for chunk in body["chunks"]:
        start, end = chunk["timestamp"]
        assert 0 <= start <= end and isinstance(chunk["text"], str)


def test_an_unknown_backend_is_a_load_error_naming_the_choices(warmgate_server, tiny_whisper_ct2):
    config = FunctionConfig(pipeline="audio-to-text", model_id=tiny_whisper_ct2, options={"backend": "whisper.cpp"})
    _, client = warmgate_server(Settings(functions=[config]))
    r = transcribe(client, encode_audio())
    assert r.status_code == 503 and "'transformers' or 'faster-whisper'" in r.json()["detail"]["msg"]

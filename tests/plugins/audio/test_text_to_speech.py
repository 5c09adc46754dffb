"""POST /text-to-speech over HTTP with a tiny VITS model through transformers' TTS pipeline."""

import base64
import io
import wave

import numpy as np
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.plugins import get_pipelines
from warmgate.core.settings import Price
from warmgate.plugins.audio.text_to_speech import split_sentences

LONG = ("The first sentence is short. The second one is a little longer than the first! "
        "Does the third ask a question? The fourth; it has a semicolon. And a fifth closes it.")


@pytest.fixture(scope="session")
def tiny_vits(tiny_model_dir):
    return str(tiny_model_dir(get_pipelines()["text-to-speech"]))


@pytest.fixture(scope="session")
def tiny_speecht5(tmp_path_factory):
    from warmgate.testing.models import build_tiny_speecht5

    directory = tmp_path_factory.mktemp("speecht5")
    build_tiny_speecht5(directory)
    return directory


@pytest.fixture
def tts(warmgate_server, tiny_vits, tiny_speecht5):
    voice = tiny_speecht5 / "voice.npy"
    np.save(voice, np.linspace(-1, 1, 8, dtype=np.float32))
    functions = [
        FunctionConfig(pipeline="text-to-speech", model_id=str(tiny_speecht5), aliases=["speecht5"],
                       options={"vocoder": str(tiny_speecht5 / "vocoder"), "speaker_embeddings": str(voice)}),
        FunctionConfig(pipeline="text-to-speech", model_id=tiny_vits, aliases=["vits"], price=Price(price_per_unit=5),
                       options={"max_chars": 40}),
        FunctionConfig(pipeline="text-to-speech", model_id="parler-tts/parler-tts-mini-v1", aliases=["parler"]),
    ]
    _, client = warmgate_server(Settings(functions=functions))
    return client


def wav_of(response):
    url = response.json()["audio"]["url"]
    assert url.startswith("data:audio/wav;base64,")
    with wave.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as audio:
        return audio.getnchannels(), audio.getsampwidth(), audio.getframerate(), audio.getnframes()


def test_speech_comes_back_as_a_mono_16_bit_wav_priced_per_character(tts):
    r = tts.post("/text-to-speech", json={"model_id": "vits", "text": "Hello there."})
    assert r.status_code == 200, r.text
    channels, width, rate, frames = wav_of(r)
    assert (channels, width, rate) == (1, 2, 16000) and frames > 0
    assert (r.headers["x-warmgate-units"], r.headers["x-warmgate-price"]) == ("12", "60")


def test_speecht5_speaks_through_its_vocoder_with_the_configured_voice(tts):
    r = tts.post("/text-to-speech", json={"model_id": "speecht5", "text": "hello world"})
    assert r.status_code == 200, r.text
    channels, width, rate, _ = wav_of(r)
    assert (channels, width, rate) == (1, 2, 16000)


def test_long_text_is_spoken_sentence_by_sentence_and_joined(tts):
    short = wav_of(tts.post("/text-to-speech", json={"model_id": "vits", "text": "The first sentence is short."}))
    long = wav_of(tts.post("/text-to-speech/", json={"model_id": "vits", "text": LONG, "description": "ignored"}))
    assert long[3] > 3 * short[3]


def test_sentences_are_packed_up_to_the_limit():
    pieces = split_sentences(LONG, 40)
    assert all(len(p) <= 40 for p in pieces)
    assert " ".join(pieces).split() == LONG.split()
    assert pieces[0] == "The first sentence is short."
    assert split_sentences("one two three four five six", 10) == ["one two", "three four", "five six"]


@pytest.mark.parametrize("body", [{"text": ""}, {"text": "   "}, {}])
def test_nothing_to_say_is_a_400(tts, body):
    r = tts.post("/text-to-speech", json={"model_id": "vits", **body})
    assert r.status_code == 400 and "non-empty text" in r.json()["detail"]["msg"]


def test_a_text_that_is_not_a_string_is_a_422(tts):
    r = tts.post("/text-to-speech", json={"model_id": "vits", "text": 42})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "text"]


def test_parler_without_its_package_says_what_to_install(tts):
    r = tts.post("/text-to-speech", json={"model_id": "parler", "text": "hi"})
    assert r.status_code == 503
    assert "parler-tts package" in r.json()["detail"]["msg"]


@pytest.mark.parametrize("model", ["vits", "speecht5"])
@pytest.mark.parametrize("text", ["\x07", "\x00\x1b", "你好世界", "😀🎉", "😀 你好 \x07"])
def test_text_the_tokenizer_drops_entirely_is_a_400(tts, model, text):
    r = tts.post("/text-to-speech", json={"model_id": model, "text": text})
    assert r.status_code == 400, r.text
    assert "nothing speakable remains" in r.json()["detail"]["msg"]


def test_unspeakable_sentences_are_skipped_and_the_rest_is_spoken(tts):
    alone = wav_of(tts.post("/text-to-speech", json={"model_id": "vits", "text": "Hello there."}))
    mixed = tts.post("/text-to-speech", json={"model_id": "vits", "text": "😀🎉. 你好世界. Hello there."})
    assert mixed.status_code == 200, mixed.text
    assert wav_of(mixed)[:3] == alone[:3]

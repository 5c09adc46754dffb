"""Images in chat messages, driven by the openai SDK: a tiny random-weight LLaVA answers an
image and a question through the real transformers loaders; Ollama gets the image as base64
``images``; bad, oversized and unfetchable images are 4xx naming their part; http(s) URLs are
fetched only when the function allows it, with a size cap and a timeout."""

import asyncio
import base64
import io

import openai
import pytest
from litestar import Litestar, Response, get
from litestar.response import Stream
from PIL import Image

from warmgate import FunctionConfig, Settings
from warmgate.testing import serve

IMAGE_TOKENS = 16  # the tiny LLaVA: 32 px images in 8 px patches


def _png(width: int = 40, height: int = 30, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def _question(url: str, text: str = "what is in this picture?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


@pytest.fixture(scope="module")
def image_host():
    """An http server on 127.0.0.1: ``/small.png``, ``/large.png`` (over the cap below) and
    ``/drip.png``, which sends a byte now and then and never ends."""

    @get("/small.png", sync_to_thread=False)
    def small() -> Response[bytes]:
        return Response(_png(), media_type="image/png")

    @get("/large.png", sync_to_thread=False)
    def large() -> Response[bytes]:
        return Response(_png(600, 600) + b"\0" * 300_000, media_type="image/png")

    @get("/drip.png")
    async def drip() -> Stream:
        async def forever():
            while True:
                yield b"\0"
                await asyncio.sleep(0.2)

        return Stream(forever(), media_type="image/png")

    with serve(Litestar([small, large, drip])) as server:
        yield server.url


@pytest.fixture
def vision(warmgate_server, tiny_vlm, tiny_chat, engines, image_host, tmp_path):
    """A gateway with the tiny VLM (fetching off), the same VLM fetching with small caps (the
    model named ``fetching``), the text-only tiny chat model and an Ollama function; an openai
    SDK client on it."""
    _, ollama = engines
    (tmp_path / "fetching").symlink_to(tiny_vlm)  # the same model directory under its own name
    functions = [
        FunctionConfig(pipeline="llm", model_id=tiny_vlm, options={"max_input_pixels": 100 * 100}),
        FunctionConfig(pipeline="llm", model_id=str(tmp_path / "fetching"), aliases=["fetching"], options={
            "fetch_image_urls": True, "max_image_bytes": 200_000, "image_fetch_timeout": 1.0}),
        FunctionConfig(pipeline="llm", model_id=tiny_chat),
        FunctionConfig(pipeline="llm", model_id="llama3.1:8b", options={"backend": "ollama", "host": ollama.url}),
    ]
    server, _ = warmgate_server(Settings(functions=functions))
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    yield sdk, tiny_vlm, tiny_chat, ollama
    sdk.close()


def _refusal(error: pytest.ExceptionInfo) -> str:
    return error.value.response.json()["detail"]["msg"]


def test_the_vision_model_answers_an_image_and_a_question(vision):
    sdk, vlm, _, _ = vision
    with_image = sdk.chat.completions.create(model=vlm, messages=_question(_data_url(_png())), max_tokens=5,
                                             temperature=0)
    text_only = sdk.chat.completions.create(model=vlm, max_tokens=5, temperature=0, messages=[
        {"role": "user", "content": [{"type": "text", "text": "what is in this picture?"}]}])
    assert with_image.choices[0].message.content
    assert with_image.usage.completion_tokens == 5
    # the image reached the model: its tokens are in the prompt
    assert with_image.usage.prompt_tokens - text_only.usage.prompt_tokens == IMAGE_TOKENS


def test_the_vision_model_streams_its_answer_to_an_image(vision):
    sdk, vlm, _, _ = vision
    plain = sdk.chat.completions.create(model=vlm, messages=_question(_data_url(_png())), max_tokens=6,
                                        temperature=0)
    stream = sdk.chat.completions.create(model=vlm, messages=_question(_data_url(_png())), max_tokens=6,
                                         temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens


def test_different_images_steer_the_answer(vision):
    sdk, vlm, _, _ = vision
    answers = {sdk.chat.completions.create(model=vlm, messages=_question(_data_url(_png(color=color))), max_tokens=8,
                                           temperature=0).choices[0].message.content
               for color in ((255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255))}
    assert len(answers) > 1


def test_a_text_only_model_sent_an_image_is_a_400_naming_the_model(vision):
    sdk, _, chat, _ = vision
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=chat, messages=_question(_data_url(_png())), max_tokens=2)
    assert _refusal(refused).startswith("`messages[0].content[1]`") and chat in _refusal(refused)


def test_ollama_gets_the_image_as_base64_images(vision):
    sdk, _, _, ollama = vision
    png = _png()
    answer = sdk.chat.completions.create(model="llama3.1:8b", messages=_question(_data_url(png)), max_tokens=4)
    assert answer.choices[0].message.content
    sent = ollama.chats[-1].body["messages"][-1]
    assert sent["images"] == [base64.b64encode(png).decode()]
    assert sent["content"] == "what is in this picture?"


@pytest.mark.parametrize("url", [_data_url(b"hello, not an image", "text/plain"),
                                 "data:image/png;base64,iVBORw0KGgo=",  # a PNG signature and nothing more
                                 "data:image/png;base64,not base64!",
                                 "data:image/png,rawbytes"])
@pytest.mark.parametrize("stream", [False, True])
def test_an_undecodable_image_is_a_400_naming_its_part(vision, url, stream):
    sdk, vlm, _, _ = vision
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=vlm, messages=_question(url), max_tokens=2, stream=stream)
    assert _refusal(refused).startswith("`messages[0].content[1]`")


def test_an_image_over_the_pixel_cap_is_a_413(vision):
    sdk, vlm, _, _ = vision
    with pytest.raises(openai.APIStatusError) as refused:
        sdk.chat.completions.create(model=vlm, messages=_question(_data_url(_png(101, 100))), max_tokens=2)
    assert refused.value.status_code == 413
    assert _refusal(refused).startswith("`messages[0].content[1]`") and "10000" in _refusal(refused)


def test_an_image_over_the_byte_cap_is_a_413_before_decoding(vision):
    sdk, _, _, _ = vision
    with pytest.raises(openai.APIStatusError) as refused:
        sdk.chat.completions.create(model="fetching", messages=_question(_data_url(b"\0" * 300_000)), max_tokens=2)
    assert refused.value.status_code == 413 and "max_image_bytes" in _refusal(refused)


def test_an_http_url_is_refused_when_fetching_is_off_saying_how_to_enable_it(vision, image_host):
    sdk, vlm, _, _ = vision
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=vlm, messages=_question(image_host + "/small.png"), max_tokens=2)
    assert _refusal(refused).startswith("`messages[0].content[1]`") and "fetch_image_urls: true" in _refusal(refused)


def test_a_function_that_fetches_reads_the_image_from_its_url(vision, image_host):
    sdk, _, _, _ = vision
    fetched = sdk.chat.completions.create(model="fetching", messages=_question(image_host + "/small.png"),
                                          max_tokens=4, temperature=0)
    inline = sdk.chat.completions.create(model="fetching", messages=_question(_data_url(_png())),
                                         max_tokens=4, temperature=0)
    assert fetched.choices[0].message.content == inline.choices[0].message.content
    assert fetched.usage.prompt_tokens == inline.usage.prompt_tokens


def test_a_fetched_image_over_the_byte_cap_is_a_413(vision, image_host):
    sdk, _, _, _ = vision
    with pytest.raises(openai.APIStatusError) as refused:
        sdk.chat.completions.create(model="fetching", messages=_question(image_host + "/large.png"), max_tokens=2)
    assert refused.value.status_code == 413 and "200000" in _refusal(refused)


def test_a_fetch_that_never_ends_is_cut_off_by_the_timeout(vision, image_host):
    sdk, _, _, _ = vision
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="fetching", messages=_question(image_host + "/drip.png"), max_tokens=2)
    assert "took over 1 s" in _refusal(refused)


def test_an_unreachable_or_missing_url_is_a_400(vision, image_host):
    sdk, _, _, _ = vision
    for url in (image_host + "/missing.png", "http://127.0.0.1:9/image.png", "ftp://example.com/a.png"):
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(model="fetching", messages=_question(url), max_tokens=2)
        assert _refusal(refused).startswith("`messages[0].content[1]`"), url

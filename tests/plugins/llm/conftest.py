import openai
import pytest

from warmgate.core.plugins import get_pipelines

from .every_backend import priced_gateway
from .fake_ollama import FakeModel, run_fake_ollama
from .openai_upstream import run_upstream


@pytest.fixture(scope="session")
def tiny_chat(tiny_model_dir):
    """The tiny random-weight chat model's directory."""
    return str(tiny_model_dir(get_pipelines()["llm"]))


@pytest.fixture(scope="module")
def engines():
    """``(relay engine, fake Ollama)``, shared by a module's tests: the engine serves
    ``org/relayed``, the fake Ollama ``llama3.1:8b``."""
    with run_upstream("org/relayed") as upstream, run_fake_ollama(local=[FakeModel(name="llama3.1:8b")]) as ollama:
        yield upstream, ollama


@pytest.fixture
def priced(warmgate_server, tiny_chat, engines, tmp_path):
    """A function on each backend priced per token, with a ledger -> (openai client, httpx client,
    model id by backend, ledger path)."""
    ledger = tmp_path / "usage.sqlite"
    sdk, client, models = priced_gateway(warmgate_server, tiny_chat, *engines, ledger)
    with sdk:
        yield sdk, client, models, ledger


@pytest.fixture
def sdk():
    """``sdk(base_url)``: an ``openai.OpenAI`` client without retries, closed after the test."""
    clients = []

    def make(base_url):
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory):
    """The tiny random-weight vision-language model's directory (a LLaVA), built once."""
    from warmgate.plugins.llm.demo import build_tiny_vision_model

    directory = tmp_path_factory.mktemp("tiny-vlm")
    build_tiny_vision_model(directory)
    return str(directory)

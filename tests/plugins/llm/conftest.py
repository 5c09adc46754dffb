import openai
import pytest


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

"""The console's page and assets carry one well-formed Content-Type each, over real HTTP."""

from warmgate import Settings
from warmgate.testing import EchoPipeline


def test_the_console_page_assets_and_metrics_name_their_charset_once(warmgate_server):
    _, client = warmgate_server(Settings(), pipelines={"echo": EchoPipeline().spec})
    expected = {
        "/console": "text/html; charset=utf-8",
        "/console/static/console.js": "text/javascript; charset=utf-8",
        "/console/static/console.css": "text/css; charset=utf-8",
        "/metrics": "text/plain; version=0.0.4; charset=utf-8",
    }
    got = {}
    for path in expected:
        response = client.get(path)
        assert response.status_code == 200, path
        got[path] = response.headers.get_list("content-type")
    assert got == {path: [value] for path, value in expected.items()}

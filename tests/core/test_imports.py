"""Starting the gateway must stay light: no ML library is imported until a model loads."""

import json
import subprocess
import sys

HEAVY = ["torch", "diffusers", "transformers", "vllm", "ray", "accelerate", "av", "PIL"]

PROBE = """
import json, sys, time
t = time.perf_counter()
import warmgate, warmgate.core.cli, warmgate.testing
from warmgate.core.plugins import DEFAULT_PLUGINS, get_pipelines
import importlib
for name in DEFAULT_PLUGINS:
    importlib.import_module(name)
app = warmgate.create_app(warmgate.Settings())
print(json.dumps({"seconds": time.perf_counter() - t, "modules": sorted(sys.modules)}))
"""


def test_gateway_imports_no_heavy_library():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    loaded = set(report["modules"])
    assert [m for m in HEAVY if m in loaded] == []

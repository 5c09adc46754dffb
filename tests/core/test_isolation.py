"""A test process leaves the user's own cache alone: its ledgers, key stores and demo models go
to the session's temporary cache directory (``warmgate.testing.fixtures``)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = [  # in-process gateways on default settings (the ledger) and a demo model build
    "tests/core/http/test_runner_surface.py",
    "tests/plugins/pricing/test_keys.py::test_a_pipeline_name_allows_every_function_of_that_pipeline",
    "tests/plugins/console/test_console_headers.py",
]


def test_a_test_process_writes_nothing_into_the_users_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "WARMGATE_CACHE_DIR" and not k.startswith("XDG_")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []

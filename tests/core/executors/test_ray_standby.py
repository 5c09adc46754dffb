"""The standby worker's setup hook and its readiness marker, without a Ray cluster (the cluster
case is in tests/core/executors/test_ray.py)."""

import os
import subprocess
import sys
import time

from warmgate.core.executors import ray_standby


def test_the_setup_hook_imports_what_it_can_says_what_it_cannot_and_marks_the_worker_ready(tmp_path, monkeypatch):
    import tempfile

    env = {**os.environ, "TMPDIR": str(tmp_path), ray_standby.MODULES_VARIABLE: "json,no_such_module_here,colorsys"}
    code = ("import sys; from warmgate.core.executors.ray_standby import preload; preload(); "
            "print(sorted(m for m in ('json', 'colorsys') if m in sys.modules))")
    since = time.time() - 1
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr  # a module that fails to import never stops the worker
    assert done.stdout.strip() == "['colorsys', 'json']"
    assert "could not import no_such_module_here: ModuleNotFoundError" in done.stderr
    [marker] = tmp_path.glob("warmgate-standby-*")
    assert marker.read_text() == "json,no_such_module_here,colorsys"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert ray_standby.wait_ready("json,no_such_module_here,colorsys", since, timeout=1)
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert not ray_standby.wait_ready("other,modules", since, timeout=0.2)
    assert list(tmp_path.glob("warmgate-standby-*")) == []  # its process has ended: the stale marker is dropped


def test_wait_ready_takes_a_fresh_marker_of_the_same_modules_once(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    since = time.time() - 1
    ray_standby._marker(os.getpid()).write_text("torch,transformers")
    assert not ray_standby.wait_ready("torch", since, timeout=0.2)  # other modules: not this standby
    assert not ray_standby.wait_ready("torch,transformers", time.time() + 60, timeout=0.2)  # older than asked
    assert ray_standby.wait_ready("torch,transformers", since, timeout=1)
    assert not ray_standby.wait_ready("torch,transformers", since, timeout=0.2)  # taken
    ray_standby._marker(os.getpid()).write_text("x")
    ray_standby.forget_ready()  # a replica's worker is no standby any more
    assert list(tmp_path.iterdir()) == []


def test_runtime_env_names_the_hook_and_the_modules():
    env = ray_standby.runtime_env(["warmgate.core.executors.ray_serve", "torch"])
    assert env == {"env_vars": {"__RAY_WORKER_PROCESS_SETUP_HOOK_ENV_VAR": "warmgate.core.executors.ray_standby.preload",
                                "WARMGATE_STANDBY_MODULES": "warmgate.core.executors.ray_serve,torch"}}

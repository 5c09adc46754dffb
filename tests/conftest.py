import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest_plugins = ["warmgate.testing.fixtures", "warmgate.testing.postgres"]


def pytest_configure(config):
    # Installed entry-point plugins must not change what the in-process tests see.
    sys._called_from_test = True

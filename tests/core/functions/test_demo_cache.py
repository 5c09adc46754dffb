"""Demo models are cached with their build version: an old cached build is built again."""

from warmgate.core.functions.demo import DEMO_BUILD_VERSION, demo_model_dir, ensure_demo_model
from warmgate.core.functions.spec import DemoModel


def test_a_cached_demo_build_is_reused_and_an_older_build_is_replaced(tmp_path):
    builds = []

    def build(directory):
        builds.append(directory)
        (directory / "weights.bin").write_text(f"build {len(builds)}")

    demo = DemoModel(model_id="warmgate-demo/tiny-test", build=build)
    target = ensure_demo_model(demo, tmp_path)
    assert ensure_demo_model(demo, tmp_path) == target == demo_model_dir(demo, tmp_path) and len(builds) == 1
    assert f"build {DEMO_BUILD_VERSION}" in (target / ".warmgate-built").read_text()

    (target / ".warmgate-built").write_text(demo.model_id)  # the marker builds before versions wrote
    assert ensure_demo_model(demo, tmp_path) == target and len(builds) == 2
    assert (target / "weights.bin").read_text() == "build 2"
    assert ensure_demo_model(demo, tmp_path) == target and len(builds) == 2

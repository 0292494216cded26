"""Each pip extra gives a working `kubeformer` for the subcommands it covers and a message naming the
extra for the rest.

Installing every extra into a fresh venv takes minutes; instead each case runs the CLI in a subprocess
whose `sys.meta_path` refuses the modules that the other extras install, exactly as Python does when a
package is absent (ModuleNotFoundError with its name). Seconds, so it runs in CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Top-level modules each extra installs beyond the core dependencies (pyproject.toml).
BUILDER_ONLY = ["torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "onnx"]
BUILDER_ONLY += ["onnxruntime", "sentencepiece"]
SERVE_ONLY = ["pytriton"]
FETCH = ["tritonclient"]

BLOCKED = {
    "builder": [*FETCH, *SERVE_ONLY],
    "fetch": [*BUILDER_ONLY, *SERVE_ONLY],
    "serve": BUILDER_ONLY,
}

RUNNER = """
import sys
blocked = set(sys.argv[1].split(","))

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
from kubeformer_builder.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def kubeformer(extra: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("builder_image", "operator"))}
    return subprocess.run(
        [sys.executable, "-c", RUNNER, ",".join(BLOCKED[extra]), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("extra", BLOCKED)
def test_help_lists_every_subcommand(extra):
    result = kubeformer(extra, "--help")
    assert result.returncode == 0, result.stderr
    for command in ("build", "bench", "serve", "predict", "fetch", "run"):
        assert command in result.stdout


def test_help_names_the_extra_of_a_subcommand_that_cannot_load():
    """Without tritonclient (builder only), serve's and fetch's modules do not import at all."""
    result = kubeformer("builder", "--help")
    assert "(unavailable: pip install 'kubeformer[serve]')" in result.stdout
    assert "(unavailable: pip install 'kubeformer[fetch]')" in result.stdout


@pytest.mark.parametrize(
    ("extra", "refused", "needed"),
    [
        ("builder", ["serve", "/artifact"], "serve"),
        ("builder", ["fetch", "/artifact", "/dest"], "fetch"),
        ("fetch", ["build", "hf://acme/bert", "--output=/tmp/out"], "builder"),
        ("serve", ["bench", "hf://acme/bert"], "builder"),
    ],
)
def test_a_subcommand_without_its_extra_says_what_to_install(extra, refused, needed):
    result = kubeformer(extra, *refused)
    assert result.returncode == 8, result.stderr
    assert f"pip install 'kubeformer[{needed}]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_fetch_extra_runs_fetch(tmp_path):
    """No artifact there: fetch itself runs and fails on the artifact (exit 7), not on an import."""
    result = kubeformer("fetch", "fetch", str(tmp_path / "none"), str(tmp_path / "dest"))
    assert result.returncode == 7, result.stderr
    assert "Traceback" not in result.stderr and "pip install" not in result.stderr


def test_builder_extra_builds_arguments_without_serving_modules():
    result = kubeformer("builder", "build", "--help")
    assert result.returncode == 0, result.stderr
    assert "--output" in result.stdout

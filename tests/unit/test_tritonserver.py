"""The local Triton's guards: the numpy it can run with, and how its python backend stubs are found."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from kubeformer_builder.errors import BackendUnavailableError
from kubeformer_builder.serving.tritonserver import STUB_NUMPY_MAJOR, check_numpy, find_stubs, is_running

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def test_numpy_2_is_refused_with_what_to_do():
    check_numpy("1.26.4")
    with pytest.raises(BackendUnavailableError, match=r"numpy 2\.4\.6 .* numpy 1\.x.*numpy<2"):
        check_numpy("2.4.6")


def test_the_serve_extra_pins_the_numpy_the_stub_needs():
    serve = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["serve"]
    (pin,) = [spec for spec in serve if re.match(r"numpy\b", spec)]
    assert f"<{STUB_NUMPY_MAJOR + 1}" in pin


def test_stubs_are_children_named_like_the_stub_binary(tmp_path):
    stub = tmp_path / "triton_python_backend_stub"
    stub.symlink_to(sys.executable)
    # Same argv positions as Triton's: stub, model file (here -c CODE), shm region, sizes..., instance name.
    args = ["-c", "import time; time.sleep(30)", "1", "1", "0", "dir", "336", "m_tokenizer_0_0"]
    child = subprocess.Popen([str(stub), *args])
    try:
        assert find_stubs(os.getpid()) == {child.pid: "m_tokenizer_0_0"}
        assert is_running(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not is_running(child.pid)

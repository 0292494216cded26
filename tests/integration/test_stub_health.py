"""A python backend stub that dies while serving stops `kubeformer serve` with a reason.

Triton 2.51 keeps a model whose stub died READY and answers every request with "Stub process ...
is not healthy"; the server's own health check must catch it (issue 11 case 9).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from kubeformer_builder.config import Task
from kubeformer_builder.errors import ServeError
from kubeformer_builder.serving.tritonserver import Endpoints, TritonServer
from tests.fixtures.triton import free_ports


def test_a_dead_tokenizer_stub_is_reported_by_name(tiny_build, tmp_path):
    _, artifact = tiny_build("bert", Task.TEXT_CLASSIFICATION, precision="fp32")
    endpoints = Endpoints("127.0.0.1", *free_ports(3))
    with TritonServer([artifact / "model_repository"], tmp_path, endpoints) as server:
        model = "bert-text-classification"
        assert sorted(server.stubs.values()) == [f"{model}_model_0_0", f"{model}_tokenizer_0_0"]
        server.check_alive()
        (tokenizer_pid,) = [pid for pid, name in server.stubs.items() if "_tokenizer_" in name]
        os.kill(tokenizer_pid, signal.SIGKILL)
        with pytest.raises(ServeError, match=r"stub of .*_tokenizer_0_0 died"):
            for _ in range(100):  # SIGKILL lands at once; this only waits for the kernel to end it
                server.check_alive()
                time.sleep(0.05)

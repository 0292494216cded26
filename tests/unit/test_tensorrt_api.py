"""The TensorRT stage uses only APIs the installed (pinned) TensorRT has, and no precision flags.

TensorRT 11 removed BuilderFlag.FP16/INT8 and other weak-typing APIs; this reads
stages/tensorrt.py's own source, so a call added there without a check here fails the test.
The API half runs where `tensorrt` is installed (the gpu extra) and is skipped elsewhere.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from kubeformer_builder.stages import tensorrt as stage
from kubeformer_builder.versions import SERVING

SOURCE = Path(stage.__file__).read_text()
TREE = ast.parse(SOURCE)

# Methods and properties the stage calls on TensorRT objects, by the class that has them.
INSTANCE_API = {
    "Builder": {
        "create_network",
        "create_builder_config",
        "create_optimization_profile",
        "build_serialized_network",
    },
    "OnnxParser": {"parse_from_file", "get_error", "num_errors"},
    "IBuilderConfig": {"set_memory_pool_limit", "add_optimization_profile"},
    "IOptimizationProfile": {"set_shape"},
    "Runtime": {"deserialize_cuda_engine"},
    "ICudaEngine": {
        "create_execution_context",
        "get_tensor_name",
        "num_io_tensors",
        "get_tensor_mode",
        "get_tensor_dtype",
        "get_tensor_profile_shape",
    },
    "IExecutionContext": {"set_input_shape", "set_tensor_address", "get_tensor_shape", "execute_async_v3"},
}
# The local names (and self attributes) the stage binds TensorRT objects to.
TRT_OBJECTS = {"builder", "network", "parser", "config", "profile", "engine", "context", "runtime"}


def module_chains() -> set[str]:
    """Every `trt.A.B` the stage names, as 'A.B'."""
    chains = set()
    for node in ast.walk(TREE):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if parts and isinstance(node, ast.Name) and node.id in ("trt", "tensorrt"):
            chains.add(".".join(reversed(parts)))
        elif len(parts) > 1 and parts[-1] == "trt":  # self.trt.X
            chains.add(".".join(reversed(parts[:-1])))
    return chains


def cuda_calls() -> set[str]:
    """Every `cudart.X` (cuda.bindings.runtime) the stage names."""
    return {
        node.attr
        for node in ast.walk(TREE)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "cudart"
    }


def instance_calls() -> set[str]:
    """Attributes the stage reads on objects it holds TensorRT objects in (`builder.x`, `self.engine.x`)."""
    used = set()
    for node in ast.walk(TREE):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
        if name in TRT_OBJECTS:
            used.add(node.attr)
    return used


def test_no_weak_typing_flags():
    chains = module_chains()
    assert not any(c.startswith("BuilderFlag") for c in chains), "strongly typed: precision is the graph's"
    assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" in chains


def test_every_instance_call_is_checked():
    listed = set().union(*INSTANCE_API.values())
    assert instance_calls() <= listed, f"add to INSTANCE_API: {instance_calls() - listed}"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="tensorrt is not installed")
def test_installed_tensorrt_has_every_api_the_stage_uses():
    import tensorrt as trt

    assert trt.__version__ == SERVING.tensorrt, "the builder's TensorRT must be the serving stack's"
    for chain in sorted(module_chains()):
        target = trt
        for part in chain.split("."):
            assert hasattr(target, part), f"tensorrt {trt.__version__} has no trt.{chain}"
            target = getattr(target, part)
    for cls, members in INSTANCE_API.items():
        klass = getattr(trt, cls)
        for member in members:
            assert hasattr(klass, member), f"tensorrt {trt.__version__}: {cls} has no {member}"


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None, reason="cuda-bindings is not installed")
def test_installed_cuda_bindings_have_every_call_the_stage_makes():
    from cuda.bindings import runtime as cudart

    for name in sorted(cuda_calls()):
        assert hasattr(cudart, name), f"cuda.bindings.runtime has no {name}"

"""TensorRT builds: run only where CUDA and TensorRT exist (the GPU machine), skipped elsewhere."""

import json
import shutil

import pytest

from kubeformer_builder.config import Task
from kubeformer_builder.manifest import verify_artifact
from kubeformer_builder.pipeline import build
from tests.fixtures.builds import tiny_config


def _gpu_ready() -> bool:
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.integration,
    pytest.mark.skipif(not _gpu_ready(), reason="needs a CUDA GPU and the tensorrt package"),
]


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_engine_is_built_gated_and_recorded(precision, tiny_model, tmp_path):
    model_dir = tiny_model("bert", Task.TEXT_CLASSIFICATION)
    output = tmp_path / "artifact"
    config = tiny_config(model_dir, Task.TEXT_CLASSIFICATION, backend="tensorrt", precision=precision)
    result = build(config, str(output))
    manifest = verify_artifact(output)
    assert result.precision == precision and manifest.backend == "tensorrt"
    assert manifest.versions["gpu_arch"].startswith("sm_") and manifest.versions["tensorrt"]
    assert manifest.inputs["gpu_arch"] == manifest.versions["gpu_arch"]  # part of the cache key
    assert (output / f"model_repository/{result.name}_model/1/model.plan").stat().st_size > 0
    report = json.loads((output / "report.json").read_text())
    kept = next(v for v in report["variants"] if v["name"] == report["kept"])
    assert kept["gate"]["passed"]
    shutil.rmtree(output)

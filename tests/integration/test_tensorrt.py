"""TensorRT builds: run only where a GPU and the serving stack's TensorRT exist, skipped elsewhere
(benchmarks/gpu/run.sh runs them)."""

import json
import shutil

import numpy as np
import pytest

from kubeformer_builder.config import Task
from kubeformer_builder.errors import BackendUnavailableError, KubeformerError
from kubeformer_builder.manifest import verify_artifact
from kubeformer_builder.pipeline import build
from kubeformer_builder.versions import SERVING, tensorrt_target
from tests.fixtures.builds import tiny_config


def _gpu_ready() -> bool:
    try:
        tensorrt_target()
    except BackendUnavailableError:
        return False
    return True


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
    assert manifest.versions["gpu_arch"].startswith("sm_") and manifest.versions["gpu_product"]
    assert manifest.versions["tensorrt"] == SERVING.tensorrt
    assert manifest.inputs["gpu_arch"] == manifest.versions["gpu_arch"]  # part of the cache key
    assert (output / f"model_repository/{result.name}_model/1/model.plan").stat().st_size > 0
    report = json.loads((output / "report.json").read_text())
    kept = next(v for v in report["variants"] if v["name"] == report["kept"])
    assert kept["gate"]["passed"]
    shutil.rmtree(output)


def test_engine_refuses_shapes_outside_its_profile(tiny_build):
    from kubeformer_builder.stages.tensorrt import EngineRunner

    result, output = tiny_build("bert", Task.TEXT_CLASSIFICATION, backend="tensorrt", precision="fp16")
    runner = EngineRunner(output / f"model_repository/{result.name}_model/1/model.plan")
    fits = {name: np.ones((8, 16), dtype=np.int64) for name in runner.inputs}  # tiny_config: batch max 8
    assert runner(fits)[0].shape[0] == 8
    too_many = {name: np.ones((9, 16), dtype=np.int64) for name in runner.inputs}
    with pytest.raises(KubeformerError, match=r"refuses .* shape \(9, 16\)"):
        runner(too_many)

"""The operator's cache key: the builder's canonical inputs, with the build target for TensorRT.

For ONNX Runtime this is exactly the key the builder computes, so a `kubeformer build` run by hand
with the same inputs lands on the same artifact. A TensorRT engine also depends on the GPU and
TensorRT version, which only the build node knows; the operator stands in what decides them: the
builder image (which pins TensorRT) and where the Job may run (which picks the GPU).
"""

from __future__ import annotations

from kubeformer_builder import __version__
from kubeformer_builder.cachekey import cache_key, engine_inputs
from kubeformer_operator.config import Settings
from kubeformer_operator.spec import TransformerSpec


def engine_key(spec: TransformerSpec, settings: Settings) -> str:
    inputs = engine_inputs(spec.engine, spec.engine.name or "", __version__)
    if spec.needs_gpu:
        inputs["build_target"] = {
            "image": spec.build.image or settings.builder_image,
            "nodeSelector": spec.build.placement.node_selector,
        }
    return cache_key(inputs)

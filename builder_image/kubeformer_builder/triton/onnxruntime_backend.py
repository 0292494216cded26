"""A Python-based Triton backend named `onnxruntime`, installed as backends/onnxruntime/model.py.

CPU builds of Triton (the one in the nvidia-pytriton wheel) ship only the python backend. Triton looks
for libtriton_onnxruntime.so first and, when it is absent, for backends/onnxruntime/model.py ("Python-
based backends", Triton >= 23.10), so one repository whose models say `backend: "onnxruntime"` loads
on the native backend in GPU images and on this file here. It honours what the native backend reads
from config.pbtxt: inputs, outputs, max_batch_size, default_model_filename, instance kind and the
`intra_op_thread_count` / `inter_op_thread_count` parameters.

Triton hands a Python model the dynamic batcher's requests as a list. This backend groups them by
input shape and runs each group as one batch, splitting the outputs back per request. Without
`allow_ragged_batch` Triton only hands over requests of one shape at a time, and stops forming a
batch at the first request of another shape in its queue, so mixed-length traffic barely batches.
With it, which `kubeformer serve` sets on its private copy (only this backend understands it), every
queued request comes at once and each sequence bucket becomes its own batch: no extra padding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def session_options(config: dict) -> ort.SessionOptions:
    options = ort.SessionOptions()
    values = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
    options.intra_op_num_threads = int(values.get("intra_op_thread_count", "0"))
    options.inter_op_num_threads = int(values.get("inter_op_thread_count", "0"))
    return options


def providers(kind: str, device_id: str) -> list:
    if kind == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": int(device_id)}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def group_by_shape(requests: list, names: list[str]) -> list[list[int]]:
    """Request indices grouped by the non-batch shapes of their inputs: each group is one run."""
    groups: dict[tuple, list[int]] = {}
    for index, request in enumerate(requests):
        key = tuple(pb_utils.get_input_tensor_by_name(request, n).as_numpy().shape[1:] for n in names)
        groups.setdefault(key, []).append(index)
    return list(groups.values())


class TritonPythonModel:
    """One ONNX Runtime session per Triton model instance."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        path = Path(args["model_repository"]) / args["model_version"] / filename
        self.session = ort.InferenceSession(
            str(path),
            sess_options=session_options(config),
            providers=providers(args["model_instance_kind"], args["model_instance_device_id"]),
        )
        self.input_names = [item["name"] for item in config["input"]]
        self.output_names = [item["name"] for item in config["output"]]
        self.batching = config.get("max_batch_size", 0) > 0
        declared = {item.name for item in self.session.get_inputs()}
        missing = [name for name in self.input_names if name not in declared]
        if missing:
            raise pb_utils.TritonModelException(
                f"{path}: config.pbtxt inputs {missing} are not inputs of the ONNX model ({sorted(declared)})"
            )

    def _run(self, requests: list) -> list:
        """One session run for requests of equal shapes, split back into one response each."""
        feeds = {}
        for name in self.input_names:
            arrays = [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
            feeds[name] = np.concatenate(arrays) if self.batching else arrays[0]
        outputs = self.session.run(self.output_names, feeds)
        if not self.batching:
            return [_response(self.output_names, outputs)]
        sizes = [len(pb_utils.get_input_tensor_by_name(r, self.input_names[0]).as_numpy()) for r in requests]
        parts = [np.split(output, np.cumsum(sizes)[:-1]) for output in outputs]
        return [_response(self.output_names, [part[i] for part in parts]) for i in range(len(requests))]

    def execute(self, requests: list) -> list:
        if self.batching:
            groups = group_by_shape(requests, self.input_names)
        else:  # no batch dimension: Triton sends one request at a time, run each alone
            groups = [[i] for i in range(len(requests))]
        responses: list = [None] * len(requests)
        for indices in groups:
            try:
                answered = self._run([requests[i] for i in indices])
            except Exception as error:  # onnxruntime's own exception types: each request gets the error
                failed = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error)))
                answered = [failed] * len(indices)
            for index, response in zip(indices, answered, strict=True):
                responses[index] = response
        return responses


def _response(names: list[str], arrays: list):
    return pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor(n, a) for n, a in zip(names, arrays, strict=True)]
    )

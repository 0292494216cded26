"""Tokenize texts into batches and run them through PyTorch or ONNX Runtime.

Shared by the accuracy gate, the variant selection and `kubeformer bench`, so that every
number compares the same inputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kubeformer_builder.config import Task
from kubeformer_builder.tasks import ExportWrapper

Batch = dict[str, np.ndarray]


def question_context_pairs(texts: Sequence[str]) -> list[tuple[str, str]]:
    """QA inputs from plain texts: each text is the context, a short question is made from its words.

    The question stays a few words long whatever the text's length, so that it always fits the
    shortest sequence a profile allows and only the context is ever truncated.
    """
    pairs = []
    for text in texts:
        subject = " ".join(text.split()[:3])
        pairs.append((f"What is said about {subject}?", text))
    return pairs


def tokenize(
    tokenizer,
    task: Task,
    texts: Sequence[str],
    input_names: tuple[str, ...],
    max_length: int,
    pad_to: int | None = None,
    pairs: Sequence[str] | None = None,
) -> Batch:
    """One batch, padded to the longest text (or to `pad_to`), truncated at max_length.

    pairs: second texts, one per text (sentence-pair models), truncated longest-first.
    """
    padding = "max_length" if pad_to else "longest"
    length = pad_to or max_length
    if task is Task.QUESTION_ANSWERING:
        pairs = question_context_pairs(texts)
        encoded = tokenizer(
            [q for q, _ in pairs],
            [c for _, c in pairs],
            truncation="only_second",
            max_length=length,
            padding=padding,
            return_tensors="np",
        )
    else:
        encoded = tokenizer(
            list(texts),
            None if pairs is None else list(pairs),
            truncation=True,
            max_length=length,
            padding=padding,
            return_tensors="np",
        )
    return {name: encoded[name].astype(np.int64) for name in input_names}


def batches(
    tokenizer, task: Task, texts: Sequence[str], input_names: tuple[str, ...], max_length: int, size: int = 8
) -> list[Batch]:
    """Texts sorted by length then batched, as a serving tokenizer with buckets would see them."""
    ordered = sorted(texts, key=len)
    return [
        tokenize(tokenizer, task, ordered[start : start + size], input_names, max_length)
        for start in range(0, len(ordered), size)
    ]


def run_torch(wrapper: ExportWrapper, batch: Batch) -> tuple[np.ndarray, ...]:
    with torch.inference_mode():
        outputs = wrapper(*(torch.from_numpy(batch[name]) for name in wrapper.input_names))
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    return tuple(output.float().numpy() for output in outputs)


def cpu_threads() -> int:
    """Physical cores available to this process: ORT is fastest with one thread per core."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, available)


def has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def make_session(model: Path, threads: int | None = None):
    """A session tuned like the served model: one intra-op thread per core, sequential graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or cpu_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if has_cuda() else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(model), options, providers=providers)


def run_session(session, batch: Batch) -> tuple[np.ndarray, ...]:
    names = {i.name for i in session.get_inputs()}
    return tuple(
        np.asarray(o, dtype=np.float32)
        for o in session.run(None, {k: v for k, v in batch.items() if k in names})
    )

"""Question answering over a context longer than one window, through the real Triton.

The reference is transformers' QuestionAnsweringPipeline algorithm, rebuilt in tests/fixtures/references.py
(transformers 5 removed that pipeline).
"""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from kubeformer_builder.calibration import builtin_corpus
from kubeformer_builder.config import Task
from kubeformer_builder.errors import ServeError
from kubeformer_builder.serving.client import Predictor
from kubeformer_builder.triton.repository import default_doc_stride
from tests.fixtures.references import pipeline_answer

pytestmark = pytest.mark.integration

MAX_LENGTH = 128  # the qa fixture's sequence max
QUESTIONS = ["What flows into the lake?", "Who answered the letter?"]  # about 11 windows each


@pytest.fixture(scope="module")
def context(tiny_model) -> str:
    """Corpus sentences, about 650 tokens: five or more windows of 128 tokens."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model("bert", Task.QUESTION_ANSWERING))
    sentences, text = builtin_corpus(), ""
    for sentence in sentences:
        text = f"{text} {sentence}".strip()
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) > 650:
            return text
    raise AssertionError("the corpus is too short for a 650-token context")


def test_answers_equal_the_transformers_pipeline_over_every_window(triton, tiny_model, context):
    model_dir = tiny_model("bert", Task.QUESTION_ANSWERING)
    stride = default_doc_stride(MAX_LENGTH)
    with Predictor(triton.endpoints.http, "qa") as predictor:
        raw = predictor.infer({"QUESTION": QUESTIONS[:1], "CONTEXT": [context]})
        served = predictor.predict(QUESTIONS, context=context)
    windows = raw["SAMPLE_INDEX"].shape[0]
    assert windows >= 5 and raw["START_LOGITS"].shape == (windows, MAX_LENGTH)
    first_window_end = int(raw["OFFSETS"][0, :, 1].max())
    for question, answer in zip(QUESTIONS, served, strict=True):
        expected = pipeline_answer(model_dir, question, context, MAX_LENGTH, stride)
        assert (answer["answer"], answer["start"], answer["end"]) == (
            expected["answer"], expected["start"], expected["end"]
        )  # fmt: skip
        assert answer["score"] == pytest.approx(expected["score"], rel=1e-3)
    # The model is random, so where answers fall is arbitrary; with this seed some lie beyond window 1.
    assert any(answer["start"] >= first_window_end for answer in served)


def test_more_windows_than_the_max_batch_size_are_refused_naming_the_inputs(triton, context):
    with Predictor(triton.endpoints.http, "qa") as predictor:
        with pytest.raises(ServeError, match=r"QUESTION/CONTEXT: 4 question\(s\) need \d+ context windows"):
            predictor.predict(QUESTIONS * 2, context=context)
        assert predictor.predict(QUESTIONS[:1], context=context)[0]["answer"]  # still serving

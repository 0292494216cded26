"""Question answering over a context longer than one window, through the real Triton.

The reference is transformers' QuestionAnsweringPipeline algorithm: transformers 5 removed that
pipeline, so it is rebuilt here from what transformers still ships: the tokenizer's overflowing
windows (stride, `only_second` truncation), the model, and `select_starts_ends` (the pipeline's
span scoring, kept for DocumentQuestionAnsweringPipeline), with answers aligned to words.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer
from transformers.pipelines.document_question_answering import select_starts_ends

from kubeformer_builder.calibration import builtin_corpus
from kubeformer_builder.config import Task
from kubeformer_builder.errors import ServeError
from kubeformer_builder.serving.client import Predictor
from kubeformer_builder.triton.repository import default_doc_stride

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


def pipeline_answer(model_dir, question: str, context: str, stride: int) -> dict:
    """transformers' QuestionAnsweringPipeline (top_k=1, max_answer_len=15, align_to_words=True)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
    encoded = tokenizer(
        question, context, truncation="only_second", max_length=MAX_LENGTH, stride=stride,
        return_overflowing_tokens=True, padding="max_length", return_tensors="pt",
    )  # fmt: skip
    inputs = {name: encoded[name] for name in tokenizer.model_input_names}
    with torch.inference_mode():
        output = model(**inputs)
    answers = []
    for window, encoding in enumerate(encoded.encodings):
        p_mask = np.array([sequence != 1 for sequence in encoding.sequence_ids], dtype=np.int64)
        p_mask[np.array(encoding.ids) == tokenizer.cls_token_id] = 0
        starts, ends, scores, _ = select_starts_ends(
            output.start_logits[window : window + 1].numpy(),
            output.end_logits[window : window + 1].numpy(),
            p_mask,
            encoded["attention_mask"][window].numpy(),
            max_answer_len=15,
        )
        for s, e, score in zip(starts, ends, scores, strict=True):
            start = encoding.word_to_chars(encoding.token_to_word(s), 1)[0]
            end = encoding.word_to_chars(encoding.token_to_word(e), 1)[1]
            answers.append({"answer": context[start:end], "start": start, "end": end, "score": float(score)})
    return sorted(answers, key=lambda answer: answer["score"], reverse=True)[0]


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
        expected = pipeline_answer(model_dir, question, context, stride)
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

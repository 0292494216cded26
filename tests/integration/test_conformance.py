"""Conformance: every supported family and task, served through one real Triton, answers as the
reference library does (issue 11).

The matrix is declared once (MATRIX: family x task x tokenizer kind x head); every case is a tiny random
model with a real tokenizer (WordPiece, byte-level BPE or Unigram trained with `tokenizers`), built by
the builder and served by `kubeformer serve`'s code. The reference is transformers: the model itself
plus its pipeline's post-processing (TextClassificationPipeline with its default function_to_apply,
TokenClassificationPipeline with aggregation_strategy="simple", FeatureExtractionPipeline + mean
pooling, QuestionAnsweringPipeline's algorithm rebuilt in tests/fixtures/references.py); text-classification
models are also checked on pairs (TEXT + TEXT_PAIR).
fp32 must match to float tolerance; int8 cases must stay within their gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import transformers

from kubeformer_builder.architectures import ARCHITECTURES
from kubeformer_builder.config import Task
from kubeformer_builder.errors import ServeError
from kubeformer_builder.pipeline import build
from kubeformer_builder.serving.client import Predictor
from kubeformer_builder.triton.repository import default_doc_stride
from tests.fixtures.builds import tiny_config
from tests.fixtures.models import FAMILIES, make_tiny_model
from tests.fixtures.references import pipeline_answer
from tests.fixtures.triton import serving

TC, FE, NER, QA = (
    Task.TEXT_CLASSIFICATION,
    Task.FEATURE_EXTRACTION,
    Task.TOKEN_CLASSIFICATION,
    Task.QUESTION_ANSWERING,
)
WORDPIECE, BPE, UNIGRAM = "wordpiece", "byte-level-bpe", "unigram"
# The tokenizer kind each family's tokenizer in tests/fixtures/models.py is.
TOKENIZER_KINDS = {
    "bert": WORDPIECE,
    "electra": WORDPIECE,
    "ernie": WORDPIECE,
    "distilbert": WORDPIECE,
    "mpnet": WORDPIECE,
    "roberta": BPE,
    "xlm-roberta": UNIGRAM,
    "camembert": UNIGRAM,
    "albert": UNIGRAM,
    "deberta-v2": UNIGRAM,
}
SEQUENCE = (1, 32, 64)  # buckets 16, 32, 64
BUCKET = 32


@dataclass(frozen=True)
class Case:
    family: str  # a model_type of ARCHITECTURES
    task: Task
    head: str = "default"  # text-classification: default (3 labels) | one-logit | multi-label
    tokenizer_of: str | None = None  # another family's tokenizer (what a model without its own gets)
    precision: str = "fp32"

    @property
    def tokenizer_kind(self) -> str:
        return TOKENIZER_KINDS[self.tokenizer_of or self.family]

    @property
    def name(self) -> str:
        parts = [self.family, self.task.value, self.head, self.tokenizer_of or "", self.precision]
        return "-".join(p for p in parts if p and p != "default")[:63]


HEADS = {
    "one-logit": {"labels": {0: "score"}},  # regression / cross-encoder: transformers applies a sigmoid
    "multi-label": {"problem_type": "multi_label_classification"},
}

# THE matrix: every family x every task (fp32), the classification heads, tokenizers a model may be
# paired with, and a few int8 builds. Adding a family to ARCHITECTURES without a row fails below.
MATRIX: tuple[Case, ...] = (
    *(Case(family, task) for family in FAMILIES for task in Task),
    Case("bert", TC, head="one-logit"),
    Case("roberta", TC, head="multi-label"),
    Case("xlm-roberta", TC, head="one-logit"),
    # DeBERTa-v3: type_vocab_size=0 with a tokenizer that emits token_type_ids.
    Case("deberta-v2", TC, tokenizer_of="albert"),
    # DistilBERT whose tokenizer_config names no class: transformers picks BERT's (token_type_ids).
    Case("distilbert", NER, tokenizer_of="bert"),
    Case("bert", TC, precision="int8"),
    Case("xlm-roberta", FE, precision="int8"),
)

EDGE_TEXTS = {
    "plain": "Ada Lovelace worked with Charles Babbage in London.",
    "longer-than-the-limit": " ".join(["the analytical engine weaves algebraic patterns"] * 12),
    "cjk": "张三李四在北京工作。東京と大阪",
    "emoji": "I love it 😀🎉 👍🏽 so much",
    "accents": "Café déjà vu, naïve résumé à São Paulo",
    "combining-marks": "Cafe\u0301 nai\u0308ve e\u0300 n\u0303o",
}
WHITESPACE = " \t\n "
FP32_TOLERANCE = 1e-4


def bucket_text(tokenizer, length: int) -> str:
    """A text of exactly `length` tokens (special tokens included) for this tokenizer."""
    words: list[str] = []
    while len(tokenizer(" ".join(words))["input_ids"]) < length:
        words.append("a")
    text = " ".join(words)
    assert len(tokenizer(text)["input_ids"]) == length, "cannot make a text of exactly one bucket"
    return text


@dataclass
class Built:
    case: Case
    model_dir: Path
    artifact: Path


@pytest.fixture(scope="session")
def conformance(tmp_path_factory):
    """Every MATRIX case built and served by one Triton."""
    root = tmp_path_factory.mktemp("conformance")
    built = {}
    for case in MATRIX:
        model_dir = make_tiny_model(
            case.family,
            case.task,
            root / "models" / case.name,
            tokenizer_of=case.tokenizer_of,
            **HEADS.get(case.head, {}),
        )
        config = tiny_config(
            model_dir, case.task, name=case.name, precision=case.precision, sequence=SEQUENCE,
            batch=(1, 8, 32),  # a long QA context needs a dozen windows
        )  # fmt: skip
        try:
            build(config, str(root / "artifacts" / case.name))
        except Exception as error:  # reported by the case's own test; the other cases still run
            built[case] = error
            continue
        built[case] = Built(case, model_dir, root / "artifacts" / case.name)
    shared = [b.artifact for b in built.values() if isinstance(b, Built)]
    with serving(shared, root / "tritonserver.log") as endpoints:
        yield endpoints, built


def reference_pipeline(task: Task, model_dir: Path, max_length: int):
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    tokenizer.model_max_length = max_length  # the served limit; pipelines truncate there
    kind = {TC: "text-classification", NER: "token-classification", FE: "feature-extraction"}[task]
    return transformers.pipeline(kind, model=str(model_dir), tokenizer=tokenizer, device="cpu")


def texts_for(model_dir: Path) -> dict[str, str]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    return {**EDGE_TEXTS, "exactly-one-bucket": bucket_text(tokenizer, BUCKET)}


def check_classification(served: list[dict], reference_rows: list[list[dict]]) -> None:
    for answer, reference in zip(served, reference_rows, strict=True):
        assert [a["label"] for a in answer["labels"]] == [r["label"] for r in reference], answer["text"]
        assert [a["score"] for a in answer["labels"]] == pytest.approx(
            [r["score"] for r in reference], abs=FP32_TOLERANCE
        ), answer["text"]


def check_entities(served: list[dict], reference_rows: list[list[dict]]) -> None:
    for answer, reference in zip(served, reference_rows, strict=True):
        text = answer["text"]
        assert [(e["entity_group"], e["start"], e["end"]) for e in answer["entities"]] == [
            (r["entity_group"], r["start"], r["end"]) for r in reference
        ], text
        assert [e["score"] for e in answer["entities"]] == pytest.approx(
            [float(r["score"]) for r in reference], abs=FP32_TOLERANCE
        ), text
        # transformers' word is the detokenized tokens (lower-cased by uncased tokenizers); ours is
        # the text itself between start and end.
        assert all(e["word"] == text[e["start"] : e["end"]] for e in answer["entities"])


def check_agreement(served: list[dict], reference_rows: list[list[dict]]) -> None:
    """int8: the same best label on all but one text (the gate's agreement, over a few edge texts)."""
    same = [a["labels"][0]["label"] == r[0]["label"] for a, r in zip(served, reference_rows, strict=True)]
    assert sum(same) >= len(same) - 1


def check_embeddings(served: list[dict], reference_rows: list, exact: bool) -> None:
    for answer, tokens in zip(served, reference_rows, strict=True):
        expected = np.asarray(tokens[0]).mean(axis=0)  # mean pooling over every token, as built
        got = np.asarray(answer["embedding"])
        if exact:
            assert got == pytest.approx(expected, abs=FP32_TOLERANCE), answer["text"]
        else:  # int8: the gate's cosine
            cosine = got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected))
            assert cosine >= 0.99, answer["text"]


def check_answers(predictor: Predictor, model_dir: Path, texts: dict[str, str]) -> None:
    """Each edge text as the context of one question: the best span over every window, as transformers'
    QuestionAnsweringPipeline finds it with the same windows."""
    # A short question: the tiny BPE and Unigram vocabularies split words into many tokens, and a
    # question must leave more than the stride of each 64-token window to the context.
    question, stride = "Who?", default_doc_stride(SEQUENCE[-1])
    for label, context in texts.items():
        (answer,) = predictor.predict([question], context=context)
        expected = pipeline_answer(model_dir, question, context, SEQUENCE[-1], stride)
        assert (answer["start"], answer["end"]) == (expected["start"], expected["end"]), label
        assert answer["score"] == pytest.approx(expected["score"], rel=1e-3), label


def check_pairs(predictor: Predictor, pipe, texts: dict[str, str]) -> None:
    """Every edge text paired with the plain one, both orders: TEXT/TEXT_PAIR as the pipeline's
    {"text", "text_pair"} input (longest_first truncation at the served limit)."""
    second = EDGE_TEXTS["plain"]
    pairs = [pair for text in texts.values() for pair in ((text, second), (second, text))]
    served = predictor.predict_pairs(pairs)
    reference = [pipe({"text": a, "text_pair": b}, top_k=None, truncation=True) for a, b in pairs]
    check_classification(served, reference)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in MATRIX])
def test_served_answers_match_the_reference(conformance, case):
    endpoints, built = conformance
    result = built[case]
    if isinstance(result, Exception):
        raise result
    check_case(case, result, endpoints.http)


def check_case(case: Case, result: Built, url: str) -> None:
    texts = texts_for(result.model_dir)
    with Predictor(url, model=case.name) as predictor:
        if case.task is QA:
            check_answers(predictor, result.model_dir, texts)
            return
        served = predictor.predict(list(texts.values()))
        pipe = reference_pipeline(case.task, result.model_dir, SEQUENCE[-1])
        if case.task is TC:
            reference = [pipe(text, top_k=None, truncation=True) for text in texts.values()]
            if case.precision == "fp32":
                check_classification(served, reference)
                check_pairs(predictor, pipe, texts)
            else:
                check_agreement(served, reference)
        elif case.task is NER:
            check_entities(served, [pipe(text, aggregation_strategy="simple") for text in texts.values()])
        else:
            reference = [pipe(text, truncation=True) for text in texts.values()]
            check_embeddings(served, reference, exact=case.precision == "fp32")


@pytest.mark.parametrize("task", [TC, NER, FE])
def test_whitespace_only_text_is_refused_by_name(conformance, task):
    endpoints, _ = conformance
    model = Case("bert", task).name
    with (
        Predictor(endpoints.http, model=model) as predictor,
        pytest.raises(ServeError, match=r"TEXT\[0\]: empty"),
    ):
        predictor.predict([WHITESPACE])


def test_every_supported_family_and_task_has_a_case():
    covered = {(case.family, case.task) for case in MATRIX if case.precision == "fp32"}
    missing = [(f, t.value) for f in ARCHITECTURES for t in Task if (f, t) not in covered]
    assert not missing, f"add conformance cases for {missing}"
    kinds = {case.tokenizer_kind for case in MATRIX}
    assert kinds == {WORDPIECE, BPE, UNIGRAM}

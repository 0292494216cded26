"""The tokenizer model's Encoder on real tokenizers: bucket padding, truncation or refusal, offsets,
text pairs and question-answering windows exactly as the transformers tokenizer makes them."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
from tokenizers import Tokenizer

from kubeformer_builder.triton.repository import TOKENIZER_MODEL_SOURCE
from tests.fixtures.models import minilm_dir as tokenizer_dir

BUCKETS = [16, 32, 64]
NAMES = ["input_ids", "attention_mask", "token_type_ids"]


@pytest.fixture(scope="module")
def module():
    """tokenizer_model.py from its file; its Triton import gets an empty stand-in (Encoder needs none)."""
    sys.modules.setdefault("triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    spec = importlib.util.spec_from_file_location("kubeformer_tokenizer_model", TOKENIZER_MODEL_SOURCE)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def encoder(module, task="text-classification", truncate=True, directory=None, **options):
    tokenizer = Tokenizer.from_file(str((directory or tokenizer_dir()) / "tokenizer.json"))
    return module.Encoder(tokenizer, task, NAMES, BUCKETS, truncate, **options)


def encode(enc, texts, label="TEXT"):
    rows = enc.encode(texts, label)
    return rows, enc.arrays(rows, enc.bucket(rows, label))


def test_each_request_is_padded_to_the_smallest_bucket_that_fits(module):
    enc = encoder(module)
    for words, bucket in ((3, 16), (20, 32), (40, 64)):
        _, arrays = encode(enc, ["hello " * words, "hi"])
        assert arrays["input_ids"].shape == (2, bucket)
        assert arrays["attention_mask"][1].sum() == 3  # [CLS] hi [SEP]
        assert (arrays["input_ids"][1, 3:] == 0).all()  # [PAD] is id 0 in this vocabulary
        assert set(arrays) == set(NAMES)


def test_tokenizer_json_padding_and_truncation_are_replaced(module):
    # MiniLM's tokenizer.json pads to a fixed 128 and truncates at 128: neither may survive.
    enc = encoder(module, truncate=True)
    [encoding] = enc.encode(["word " * 400], "TEXT").encodings
    assert len(encoding.ids) == 64
    [short] = enc.encode(["word"], "TEXT").encodings
    assert len(short.ids) == 3


def test_refuse_names_the_length(module):
    enc = encoder(module, truncate=False)
    with pytest.raises(module.RequestError, match="TEXT: 402 tokens is above the maximum sequence length 64"):
        encode(enc, ["word " * 400])


def test_token_offsets_skip_special_tokens(module):
    enc = encoder(module, task="token-classification")
    offsets = enc.arrays(enc.encode(["Ada went"], "TEXT"), 16)["OFFSETS"][0]
    assert offsets[:4].tolist() == [[-1, -1], [0, 3], [4, 8], [-1, -1]]
    assert (offsets[4:] == -1).all()


def test_question_answering_offsets_cover_only_the_context(module):
    enc = encoder(module, task="question-answering")
    arrays = enc.arrays(enc.encode([("who?", "Ada went home")], "QUESTION/CONTEXT"), 16)
    spans = [tuple(o) for o in arrays["OFFSETS"][0] if o[0] >= 0]
    assert spans == [(0, 3), (4, 8), (9, 13)]
    assert arrays["token_type_ids"][0, :8].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert arrays["SAMPLE_INDEX"].tolist() == [[0]]


@pytest.mark.parametrize(
    ("value", "message"), [(b"", r"TEXT\[0\]: empty"), (b"\xff\xfe", r"TEXT\[0\]: not valid")]
)
def test_bad_texts_are_refused_by_name_and_index(module, value, message):
    with pytest.raises(module.RequestError, match=message):
        module.decode_texts(np.array([[value]], dtype=object), "TEXT")


def test_unknown_model_inputs_are_refused(module):
    tokenizer = Tokenizer.from_file(str(tokenizer_dir() / "tokenizer.json"))
    with pytest.raises(ValueError, match="position_ids"):
        module.Encoder(tokenizer, "text-classification", ["input_ids", "position_ids"], BUCKETS, True)


PAIRS = [
    ("A man is playing a guitar.", "Someone plays music."),
    ("short", "a much longer second text " * 12),
    ("a much longer first text " * 12, "short"),
    ("both long " * 20, "and even longer here " * 20),
    ("Café naïve résumé 北京", "emoji 🙂 and accents àéî"),
]


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    from kubeformer_builder.config import Task
    from tests.fixtures.models import make_tiny_model

    return make_tiny_model("roberta", Task.TEXT_CLASSIFICATION, tmp_path_factory.mktemp("roberta"))


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_pairs_are_encoded_as_the_transformers_tokenizer_encodes_them(module, kind, request):
    from transformers import AutoTokenizer

    directory = tokenizer_dir() if kind == "wordpiece" else request.getfixturevalue("bpe_dir")
    reference = AutoTokenizer.from_pretrained(directory)
    names = [n for n in NAMES if n in reference.model_input_names]
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    enc = module.Encoder(tokenizer, "text-classification", names, BUCKETS, True)
    rows, arrays = encode(enc, PAIRS, "TEXT/TEXT_PAIR")
    expected = reference(
        [a for a, _ in PAIRS], [b for _, b in PAIRS], truncation=True, max_length=64, padding="max_length"
    )  # truncation=True is longest_first
    for name in names:
        assert arrays[name].tolist() == expected[name], name
    assert "SAMPLE_INDEX" not in arrays and rows.samples == list(range(len(PAIRS)))


def test_a_request_is_single_texts_or_pairs_by_its_inputs(module):
    assert module.request_texts({"TEXT": ["a", "b"]}) == (["a", "b"], "TEXT")
    assert module.request_texts({"TEXT": ["a"], "TEXT_PAIR": ["b"]}) == ([("a", "b")], "TEXT/TEXT_PAIR")


CONTEXT = " ".join(f"Fact {i}: the river number {i} flows into lake Ontario-{i * 7}." for i in range(30))


def qa_encoder(module, stride=16, max_rows=32):
    return encoder(module, task="question-answering", stride=stride, max_rows=max_rows, cls_id=101)


def test_long_contexts_become_overlapping_windows_as_transformers_makes_them(module):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(tokenizer_dir())
    questions = ["Which river flows into lake Ontario-70?", "What is fact 3?"]
    enc = qa_encoder(module)
    rows, arrays = encode(enc, [(q, CONTEXT) for q in questions], "QUESTION/CONTEXT")
    expected = reference(
        questions,
        [CONTEXT] * 2,
        truncation="only_second",
        max_length=64,
        stride=16,
        return_overflowing_tokens=True,
        padding="max_length",
    )
    assert len(rows.encodings) > 2 * 8  # the context needs many windows
    assert arrays["SAMPLE_INDEX"].reshape(-1).tolist() == expected["overflow_to_sample_mapping"]
    for name in NAMES:
        assert arrays[name].tolist() == expected[name], name
    # Each context token's OFFSETS is its word's span, as the pipeline's word_to_chars gives it.
    for row, window in enumerate(expected.encodings):
        for token, sequence in enumerate(window.sequence_ids):
            offsets = arrays["OFFSETS"][row, token].tolist()
            if sequence == 1:
                assert offsets == list(window.word_to_chars(window.token_to_word(token), 1))
            else:
                assert offsets == ([-2, -2] if window.ids[token] == 101 else [-1, -1])


def test_windows_beyond_the_max_batch_size_are_refused(module):
    enc = qa_encoder(module, max_rows=4)
    with pytest.raises(
        module.RequestError, match=r"QUESTION/CONTEXT: 1 question\(s\) need \d+ context windows"
    ):
        enc.encode([("What?", CONTEXT)], "QUESTION/CONTEXT")


def test_a_question_leaving_no_room_beyond_the_stride_is_refused(module):
    enc = qa_encoder(module, stride=32)
    with pytest.raises(module.RequestError, match=r"QUESTION\[1\]: 40 tokens leave 21 context tokens"):
        enc.encode([("Short?", CONTEXT), ("word " * 40, CONTEXT)], "QUESTION/CONTEXT")


def test_stride_must_fit_the_window(module):
    with pytest.raises(ValueError, match=r"doc_stride: must be in 0\.\.63, got 64"):
        qa_encoder(module, stride=64)


def test_build_time_pair_tokenization_equals_the_serving_encoder(module):
    """inference.tokenize (calibration and the gate) encodes pairs as the served tokenizer does."""
    from transformers import AutoTokenizer

    from kubeformer_builder.config import Task
    from kubeformer_builder.inference import tokenize

    batch = tokenize(
        AutoTokenizer.from_pretrained(tokenizer_dir()),
        Task.TEXT_CLASSIFICATION,
        PAIRS,
        tuple(NAMES),
        64,
        pad_to=64,
    )
    _, arrays = encode(encoder(module), PAIRS, "TEXT/TEXT_PAIR")
    for name in NAMES:
        np.testing.assert_array_equal(batch[name], arrays[name])

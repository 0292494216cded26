"""The tokenizer model's Encoder on the real tokenizer: bucket padding, truncation or refusal, offsets."""

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


def encoder(module, task="text-classification", truncate=True):
    tokenizer = Tokenizer.from_file(str(tokenizer_dir() / "tokenizer.json"))
    return module.Encoder(tokenizer, task, NAMES, BUCKETS, truncate, label="TEXT")


def test_each_request_is_padded_to_the_smallest_bucket_that_fits(module):
    enc = encoder(module)
    for words, bucket in ((3, 16), (20, 32), (40, 64)):
        encodings = enc.encode(["hello " * words, "hi"])
        arrays = enc.arrays(encodings, enc.bucket(encodings))
        assert arrays["input_ids"].shape == (2, bucket)
        assert arrays["attention_mask"][1].sum() == 3  # [CLS] hi [SEP]
        assert (arrays["input_ids"][1, 3:] == 0).all()  # [PAD] is id 0 in this vocabulary
        assert set(arrays) == set(NAMES)


def test_tokenizer_json_padding_and_truncation_are_replaced(module):
    # MiniLM's tokenizer.json pads to a fixed 128 and truncates at 128: neither may survive.
    enc = encoder(module, truncate=True)
    [encoding] = enc.encode(["word " * 400])
    assert len(encoding.ids) == 64
    [short] = enc.encode(["word"])
    assert len(short.ids) == 3


def test_refuse_names_the_length(module):
    enc = encoder(module, truncate=False)
    with pytest.raises(module.RequestError, match="TEXT: 402 tokens is above the maximum sequence length 64"):
        enc.bucket(enc.encode(["word " * 400]))


def test_token_offsets_skip_special_tokens(module):
    enc = encoder(module, task="token-classification")
    encodings = enc.encode(["Ada went"])
    offsets = enc.arrays(encodings, 16)["OFFSETS"][0]
    assert offsets[:4].tolist() == [[-1, -1], [0, 3], [4, 8], [-1, -1]]
    assert (offsets[4:] == -1).all()


def test_question_answering_offsets_cover_only_the_context(module):
    enc = encoder(module, task="question-answering")
    encodings = enc.encode([("who?", "Ada went home")])
    arrays = enc.arrays(encodings, 16)
    spans = [tuple(o) for o in arrays["OFFSETS"][0] if o[0] >= 0]
    assert spans == [(0, 3), (4, 8), (9, 13)]
    assert arrays["token_type_ids"][0, :8].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize(
    ("value", "message"), [(b"", r"TEXT\[0\]: empty"), (b"\xff\xfe", r"TEXT\[0\]: not valid")]
)
def test_bad_texts_are_refused_by_name_and_index(module, value, message):
    with pytest.raises(module.RequestError, match=message):
        module.decode_texts(np.array([[value]], dtype=object), "TEXT")


def test_unknown_model_inputs_are_refused(module):
    tokenizer = Tokenizer.from_file(str(tokenizer_dir() / "tokenizer.json"))
    with pytest.raises(ValueError, match="position_ids"):
        module.Encoder(tokenizer, "text-classification", ["input_ids", "position_ids"], BUCKETS, True, "TEXT")

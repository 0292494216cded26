"""What a model takes: inputs from its forward and config, and its sequence limit."""

from __future__ import annotations

import json

import pytest
import transformers

from kubeformer_builder.architectures import find_architecture
from kubeformer_builder.build_fields import parse_triple
from kubeformer_builder.config import Range, Shapes
from kubeformer_builder.errors import ConfigError, UnsupportedModelError
from kubeformer_builder.model_inputs import read_st_max_seq_length, select_inputs, sequence_limit

TINY = {"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}
BERT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]
UNSET = int(1e30)  # transformers' model_max_length when a tokenizer names none


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (transformers.BertModel(transformers.BertConfig(vocab_size=30, **TINY)), BERT_NAMES),
        # one token type: the model's own zeros are the only ids its embeddings accept
        (
            transformers.RobertaModel(transformers.RobertaConfig(vocab_size=30, type_vocab_size=1, **TINY)),
            ["input_ids", "attention_mask"],
        ),
        (
            transformers.DebertaV2ForSequenceClassification(
                transformers.DebertaV2Config(vocab_size=30, type_vocab_size=0, **TINY)
            ),
            ["input_ids", "attention_mask"],
        ),
        (
            transformers.DistilBertModel(
                transformers.DistilBertConfig(vocab_size=30, dim=8, n_layers=1, n_heads=2, hidden_dim=8)
            ),
            ["input_ids", "attention_mask"],
        ),
        (
            transformers.MPNetModel(transformers.MPNetConfig(vocab_size=30, **TINY)),
            ["input_ids", "attention_mask"],
        ),
    ],
    ids=["bert", "roberta-one-type", "deberta-v3", "distilbert", "mpnet"],
)
def test_inputs_are_what_the_model_takes(model, expected):
    assert list(select_inputs(model, [*BERT_NAMES, "special_tokens_mask"])) == expected


def test_a_model_without_input_ids_is_refused():
    model = transformers.BertModel(transformers.BertConfig(vocab_size=30, **TINY))
    with pytest.raises(UnsupportedModelError, match="no input_ids"):
        select_inputs(model, ["attention_mask"])


def limit(model_type: str, config, tokenizer_max=UNSET, st_max=None, ceiling=8192):
    return sequence_limit(find_architecture(model_type), config, tokenizer_max, st_max, ceiling)


def test_position_embeddings_bound_the_limit():
    found = limit("bert", transformers.BertConfig(max_position_embeddings=64), tokenizer_max=512)
    assert found.tokens == 64
    assert found.describe() == "position embeddings 64, tokenizer model_max_length 512"


@pytest.mark.parametrize(
    ("model_type", "config", "tokens"),
    [
        ("roberta", transformers.RobertaConfig(max_position_embeddings=514, pad_token_id=1), 512),
        ("xlm-roberta", transformers.XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1), 512),
        ("camembert", transformers.CamembertConfig(max_position_embeddings=514, pad_token_id=0), 513),
        # MPNet hard-codes padding_idx 1 whatever pad_token_id says
        ("mpnet", transformers.MPNetConfig(max_position_embeddings=514, pad_token_id=7), 512),
        ("distilbert", transformers.DistilBertConfig(max_position_embeddings=512), 512),
    ],
)
def test_padding_offset_positions(model_type, config, tokens):
    assert limit(model_type, config).tokens == tokens


def test_unset_tokenizer_length_is_ignored_and_a_set_one_bounds():
    config = transformers.BertConfig(max_position_embeddings=512)
    assert limit("bert", config, tokenizer_max=UNSET).bounds == {"position embeddings": 512}
    assert limit("bert", config, tokenizer_max=128).tokens == 128


def test_sentence_transformers_length_replaces_the_tokenizers():
    config = transformers.BertConfig(max_position_embeddings=512)
    found = limit("bert", config, tokenizer_max=128, st_max=256)
    assert found.tokens == 256
    assert found.bounds == {"position embeddings": 512, "sentence-transformers max_seq_length": 256}


def test_relative_positions_only_fall_back_to_the_trained_length_and_the_ceiling():
    config = transformers.DebertaV2Config(max_position_embeddings=512, position_biased_input=False)
    assert limit("deberta-v2", config).bounds == {"max_position_embeddings": 512}
    assert limit("deberta-v2", config, tokenizer_max=1024).tokens == 1024
    assert limit("deberta-v2", config, tokenizer_max=100_000, ceiling=8192).bounds == {
        "tokenizer model_max_length": 100_000,
        "builder maximum": 8192,
    }


def test_st_config_is_read(tmp_path):
    assert read_st_max_seq_length(tmp_path) is None
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    assert read_st_max_seq_length(tmp_path) == 64


SHAPES = Shapes(Range(1, 8, 32), Range(1, 128, None))


def test_unset_max_becomes_the_limit_and_opt_is_clamped():
    assert SHAPES.fit_sequence(64, "position embeddings 64").sequence == Range(1, 64, 64)
    assert SHAPES.fit_sequence(512, "x").sequence == Range(1, 128, 512)
    explicit = Shapes(SHAPES.batch, Range(1, 32, 48))
    assert explicit.fit_sequence(64, "x") == explicit


def test_explicit_max_above_the_limit_is_refused_with_field_and_limit():
    explicit = Shapes(SHAPES.batch, Range(1, 32, 256))
    with pytest.raises(ConfigError) as error:
        explicit.fit_sequence(64, "position embeddings 64")
    assert str(error.value).startswith(
        "optimization.shapes.sequence.max: 256 is above this model's limit of 64 tokens "
        "(position embeddings 64)"
    )


def test_sequence_flag_may_leave_max_unset():
    assert parse_triple("1,64") == (1, 64, None)
    assert parse_triple("1,64,128") == (1, 64, 128)

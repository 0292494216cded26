"""The one table of build settings agrees with the CRD, the CLI and the operator."""

import json
from pathlib import Path

import pytest
import yaml

from kubeformer_builder.build_fields import REQUIRED, build_arguments, build_fields, values_from_spec
from kubeformer_builder.cli.main import make_parser
from kubeformer_builder.cli.options import config_from_args
from kubeformer_builder.config import parse_build_config
from kubeformer_builder.errors import ConfigError

CRD = Path(__file__).parents[2] / "crds" / "optimizedtransformer.yaml"


def crd_spec_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def crd_property(path: str) -> dict:
    node = crd_spec_schema()
    for part in path.split("."):
        node = node["properties"][part]
    return node


@pytest.mark.parametrize("field", [f for f in build_fields() if f.spec_path], ids=lambda f: f.key)
def test_every_spec_setting_exists_in_the_crd_with_the_same_default(field):
    schema = crd_property(field.spec_path)
    if isinstance(field.default, tuple):
        crd_default = tuple(schema["properties"][part].get("default") for part in ("min", "opt", "max"))
    else:
        crd_default = schema.get("default")
    expected = None if field.required else field.default
    assert crd_default == expected, f"{field.spec_path}: CRD default {crd_default!r}, table {expected!r}"
    if field.choices is not None:
        assert schema["enum"] == [member.value for member in field.choices]


def test_required_settings_are_required_by_the_crd_too():
    for field in build_fields():
        if field.required:
            parent, _, leaf = field.spec_path.rpartition(".")
            assert leaf in crd_property(parent)["required"]
    assert {f.key for f in build_fields() if f.default is REQUIRED} == {"source", "task"}


def test_a_spec_with_every_setting_round_trips_through_the_command_line():
    spec = {
        "model": {"source": "hf://org/m", "task": "token-classification", "revision": "v2",
                  "tokenizer": "s3://bucket/tok"},
        "optimization": {
            "backend": "onnxruntime", "precision": "int8", "truncation": "refuse",
            "shapes": {"batch": {"min": 2, "opt": 4, "max": 8}, "sequence": {"opt": 64, "max": 96}},
            "calibration": {"source": "s3://bucket/texts.jsonl", "column": "body", "samples": 64,
                            "method": "entropy"},
            "evaluation": {"source": "hf://org/ner-test", "textColumn": "tokens", "textPairColumn": "other",
                           "labelColumn": "ner_tags", "samples": 300},
            "accuracyGate": {"metric": "f1", "maxDrop": 0.02},
        },
        "storage": {"uri": "s3://out", "endpoint": "http://s3:8333"},
    }  # fmt: skip
    config = parse_build_config(**values_from_spec(spec), name="demo")
    assert config.shapes.sequence.as_tuple() == (1, 64, 96)  # the missing min takes the table's default
    args = make_parser().parse_args(["build", *build_arguments(config), "--output=/tmp/x"])
    assert config_from_args(args) == config


def test_missing_and_unknown_settings():
    with pytest.raises(ConfigError, match=r"model\.task: required"):
        parse_build_config(source="hf://org/m")
    with pytest.raises(TypeError, match="unknown settings"):
        parse_build_config(source="hf://org/m", task="feature-extraction", replicas=3)


def test_cli_defaults_are_the_tables():
    args = make_parser().parse_args(["build", "hf://org/m", "--task=feature-extraction", "--output=x"])
    assert config_from_args(args) == parse_build_config(source="hf://org/m", task="feature-extraction")


def test_inline_evaluation_rows_travel_as_a_json_list():
    rows = [{"text": "great", "label": "POSITIVE"}, {"text": "awful", "label": 0}]
    optimization = {"evaluation": {"examples": rows}, "accuracyGate": {"metric": "accuracy"}}
    spec = {"model": {"source": "hf://org/m", "task": "text-classification"}, "optimization": optimization}
    config = parse_build_config(**values_from_spec(spec))
    assert json.loads(config.evaluation.source) == rows
    args = make_parser().parse_args(["build", *build_arguments(config), "--output=/tmp/x"])
    assert config_from_args(args) == config

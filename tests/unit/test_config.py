import pytest

from kubeformer_builder.config import Precision, Range, Shapes, Task, parse_build_config
from kubeformer_builder.errors import ConfigError


def test_defaults_are_filled_and_typed():
    config = parse_build_config(source="hf://org/model", task="text-classification")
    assert config.task is Task.TEXT_CLASSIFICATION
    assert config.precision is Precision.AUTO
    assert config.shapes.batch == Range(1, 8, 32)
    assert config.gate.metric is None and config.gate.max_drop is None  # the metric's own default
    assert config.evaluation.source is None and config.evaluation.label_column == "label"


def test_labeled_metric_needs_evaluation_data():
    with pytest.raises(
        ConfigError, match=r"'accuracy' scores the model against labels, which optimization\.evaluation gives"
    ):
        parse_build_config(source="file:///m", task="text-classification", gate_metric="accuracy")
    config = parse_build_config(
        source="file:///m", task="text-classification", gate_metric="accuracy",
        evaluation_source="file:///data/test.jsonl", evaluation_text_pair_column="hypothesis",
    )  # fmt: skip
    assert config.evaluation.text_pair_column == "hypothesis" and config.evaluation.samples == 1000
    with pytest.raises(ConfigError, match=r"optimization.evaluation.samples: must be 1\.\.100000, got 0"):
        parse_build_config(source="file:///m", task="text-classification", evaluation_samples=0)


def test_every_problem_is_reported_with_its_field_path():
    with pytest.raises(ConfigError) as caught:
        parse_build_config(
            source="ftp://x",
            task="translation",
            backend="openvino",
            precision="int4",
            batch=(8, 4, 2),
            sequence=(0, 128, 256),
            calibration_samples=2,
            max_drop=2.0,
        )
    message = str(caught.value)
    for expected in (
        "model.source: 'ftp://x'",
        "model.task: 'translation' is not one of text-classification",
        "optimization.backend: 'openvino'",
        "optimization.precision: 'int4'",
        "optimization.shapes.batch: need min <= opt <= max, got 8/4/2",
        "optimization.shapes.sequence.min: must be a positive integer",
        "optimization.calibration.samples",
        "optimization.accuracyGate.maxDrop",
    ):
        assert expected in message


def test_bad_name_is_refused():
    with pytest.raises(ConfigError, match="name: 'Bad Name'"):
        parse_build_config(source="file:///m", task="feature-extraction", name="Bad Name")


def test_shapes_above_the_ceiling_are_refused():
    with pytest.raises(ConfigError, match=r"sequence.max: 100000 is above the limit"):
        parse_build_config(source="file:///m", task="feature-extraction", sequence=(1, 128, 100000))


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        ((1, 128, 256), (16, 32, 64, 128, 256)),
        ((1, 32, 48), (16, 32, 48)),
        ((64, 64, 64), (64,)),
        ((1, 8, 8), (8,)),
    ],
)
def test_sequence_buckets_end_at_the_max(sequence, expected):
    assert Shapes(Range(1, 1, 1), Range(*sequence)).buckets() == expected


def test_a_pair_column_needs_a_source_and_a_pair_task():
    config = parse_build_config(
        source="hf://org/nli",
        task="text-classification",
        calibration_source="file:///pairs.jsonl",
        calibration_pair_column="hypothesis",
    )
    assert config.calibration.pair_column == "hypothesis"
    with pytest.raises(ConfigError) as caught:
        parse_build_config(source="hf://org/m", task="feature-extraction", calibration_pair_column="b")
    assert "pairColumn: only text-classification takes pairs, not feature-extraction" in str(caught.value)
    assert "pairColumn: needs optimization.calibration.source" in str(caught.value)

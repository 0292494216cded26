from kubeformer_builder.cachekey import cache_key
from kubeformer_builder.config import parse_build_config
from kubeformer_builder.pipeline import build_inputs


def key_of(**overrides) -> str:
    values = {"source": "hf://org/model", "task": "text-classification", **overrides}
    return cache_key(build_inputs(parse_build_config(**values), "model"))


def test_key_is_stable_and_hex():
    assert key_of() == key_of()
    assert len(key_of()) == 64 and int(key_of(), 16) >= 0


def test_every_engine_input_changes_the_key():
    base = key_of()
    variations = [
        {"source": "hf://org/other"},
        {"revision": "v2"},
        {"task": "feature-extraction"},
        {"precision": "int8"},
        {"batch": (1, 4, 16)},
        {"sequence": (1, 64, 128)},
        {"calibration_samples": 128},
        {"calibration_method": "entropy"},
        {"max_drop": 0.02},
        {"evaluation_source": "file:///data/test.jsonl"},
        {"evaluation_source": "file:///data/test.jsonl", "evaluation_label_column": "topic"},
        {"truncation": "refuse"},
        {"tokenizer": "hf://org/tok"},
        {"calibration_source": "file:///pairs.jsonl", "calibration_pair_column": "hypothesis"},
    ]
    keys = {key_of(**variation) for variation in variations}
    assert base not in keys and len(keys) == len(variations)


def test_single_text_keys_do_not_mention_a_pair_column():
    inputs = build_inputs(parse_build_config(source="hf://org/model", task="text-classification"), "model")
    assert "pairColumn" not in inputs["calibration"]  # keys of earlier single-text builds are unchanged


def test_serving_settings_are_not_inputs():
    inputs = build_inputs(parse_build_config(source="hf://org/model", task="text-classification"), "model")
    assert not {"replicas", "dynamicBatching", "resources", "instancesPerReplica"} & set(inputs)
    assert "gpu_arch" not in inputs  # onnxruntime builds do not depend on the GPU

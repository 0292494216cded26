"""Rerank documents against a query with a served cross-encoder, as text-embeddings-inference and
infinity expose it (`top_n`, `return_documents`), in one Triton request.

Shared by `kubeformer predict --rerank` and the HTTP API front.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kubeformer_builder.errors import ConfigError
from kubeformer_builder.serving import answers
from kubeformer_builder.serving.client import EnsembleInfo, Predictor


def rerank(
    predictor: Predictor,
    query: str,
    documents: Sequence[str],
    top_n: int | None = None,
    return_documents: bool = False,
) -> list[dict]:
    """Score every document against `query`, highest first.

    The N (query, document) pairs go to Triton as ONE request of batch N, so the dynamic batcher
    sees one batch. The model must be a text-classification ensemble that takes TEXT_PAIR and
    returns one logit (a cross-encoder); the score is the sigmoid of that logit, as
    sentence-transformers' `CrossEncoder.predict` and text-embeddings-inference give.

    Returns at most `top_n` (default: all) dicts sorted by score, ties in document order:
    {"index": int, position in `documents`; "relevance_score": float in [0, 1];
    "document": str, only when `return_documents`}.
    Raises ConfigError for an empty query, no documents, more documents than the ensemble's max batch
    size, top_n < 1 or a model that is not a one-logit pair classifier; ServeError when Triton
    refuses the request (e.g. an empty document: "TEXT_PAIR[3]: empty text").
    """
    pairs = rerank_pairs(predictor.info, query, documents, top_n)
    return ranked(predictor.pair_logits(pairs), documents, top_n, return_documents)


def check_cross_encoder(info: EnsembleInfo) -> None:
    """ConfigError unless `info` is a one-logit pair classifier (a cross-encoder)."""
    labels = len(info.id2label)
    if labels != 1:
        raise ConfigError(
            f"{info.name}: rerank needs a cross-encoder with one output score, this model has {labels} labels"
        )


def rerank_pairs(info: EnsembleInfo, query: str, documents: Sequence[str], top_n: int | None) -> list:
    """The (query, document) pairs to score, after every check `rerank` documents (ConfigError)."""
    if not query.strip():
        raise ConfigError("query: empty text; send at least one non-blank character")
    if not documents:
        raise ConfigError("documents: need at least one document to rerank")
    if top_n is not None and top_n < 1:
        raise ConfigError(f"top_n: must be >= 1, got {top_n}")
    limit = info.max_batch_size
    if len(documents) > limit:
        raise ConfigError(
            f"documents: {len(documents)} documents are more than {info.name}'s max batch size "
            f"{limit} (shapes.batch.max); send at most {limit} per request"
        )
    check_cross_encoder(info)
    return [(query, document) for document in documents]


def ranked(
    logits: np.ndarray, documents: Sequence[str], top_n: int | None, return_documents: bool
) -> list[dict]:
    """What `rerank` returns, from the pairs' LOGITS float32 [N, 1]: sigmoid scores, highest first."""
    scores = answers.sigmoid(logits[:, 0].astype("float64"))
    order = sorted(range(len(documents)), key=lambda i: -scores[i])[:top_n]
    results = [{"index": i, "relevance_score": float(scores[i])} for i in order]
    if return_documents:
        for result in results:
            result["document"] = documents[result["index"]]
    return results

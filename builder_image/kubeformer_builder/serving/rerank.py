"""Rerank documents against a query with a served cross-encoder, as text-embeddings-inference and
infinity expose it (`top_n`, `return_documents`), in one Triton request.

Shared by `kubeformer predict --rerank` and the HTTP API front.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubeformer_builder.errors import ConfigError
from kubeformer_builder.serving import answers
from kubeformer_builder.serving.client import Predictor


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
    if not query.strip():
        raise ConfigError("query: empty text; send at least one non-blank character")
    if not documents:
        raise ConfigError("documents: need at least one document to rerank")
    if top_n is not None and top_n < 1:
        raise ConfigError(f"top_n: must be >= 1, got {top_n}")
    limit = predictor.info.max_batch_size
    if len(documents) > limit:
        raise ConfigError(
            f"documents: {len(documents)} documents are more than {predictor.info.name}'s max batch size "
            f"{limit} (shapes.batch.max); send at most {limit} per request"
        )
    labels = len(predictor.info.id2label)
    if labels != 1:
        raise ConfigError(
            f"{predictor.info.name}: rerank needs a cross-encoder with one output score, "
            f"this model has {labels} labels"
        )
    logits = predictor.pair_logits([(query, document) for document in documents])
    scores = answers.sigmoid(logits[:, 0].astype("float64"))
    order = sorted(range(len(documents)), key=lambda i: -scores[i])[:top_n]
    results = [{"index": i, "relevance_score": float(scores[i])} for i in order]
    if return_documents:
        for result in results:
            result["document"] = documents[result["index"]]
    return results

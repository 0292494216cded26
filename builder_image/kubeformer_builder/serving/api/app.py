"""The ASGI app: OpenAI, text-embeddings-inference-style and kubeformer routes over one Triton.

Every handler reads the body with a cap (body.py), validates it (schemas.py), finds the model
(catalog.py), makes one Triton request (backend.py) and shapes the answer. Errors leave as JSON with
a status saying whose fault they are (errors.py); an unexpected exception is logged with its traceback
and answered with a bare 500, never the traceback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kubeformer_builder.config import Task
from kubeformer_builder.errors import ConfigError
from kubeformer_builder.serving.api import schemas
from kubeformer_builder.serving.api.backend import TritonBackend
from kubeformer_builder.serving.api.body import read_json
from kubeformer_builder.serving.api.catalog import ServedModel, find
from kubeformer_builder.serving.api.errors import ApiError, invalid, too_large
from kubeformer_builder.serving.api.metrics import Metrics, MetricsMiddleware
from kubeformer_builder.serving.api.settings import ApiSettings
from kubeformer_builder.serving.client import readable_answers
from kubeformer_builder.serving.rerank import check_cross_encoder, ranked

log = logging.getLogger("kubeformer.api")
Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Front:
    """The front's state: the Triton connection (opened in the serving loop) and the served models."""

    settings: ApiSettings
    backend: TritonBackend | None = None
    models: dict[str, ServedModel] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def catalog(self) -> dict[str, ServedModel]:
        """Served models, read from Triton once it is ready; 503 until then."""
        if self.models is None:
            async with self.lock:
                if self.models is None:
                    if not await self.backend.ready():
                        raise ApiError(503, "Triton is not ready yet", code="triton_not_ready")
                    self.models = await self.backend.load_models(self.settings.repositories)
        return self.models

    async def body(self, request: Request, model: type[schemas.BaseModel]):
        raw = await read_json(request, self.settings.max_body_bytes, self.settings.body_timeout_s)
        return raw, schemas.parse(model, raw)

    def check_count(self, items: list, param: str) -> None:
        if len(items) > self.settings.max_inputs:
            raise too_large(param, f"{len(items)} inputs is above the limit of {self.settings.max_inputs}")


def json_response(content, status: int = 200) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type="application/json"
    )


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def shorten(model: ServedModel, vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """Matryoshka-style: the first `dimensions` values, renormalized; only for normalizing models."""
    if not model.info.normalized:
        raise invalid(
            "dimensions", f"{model.name!r} does not normalize its embeddings, so it cannot shorten them"
        )
    if dimensions > vectors.shape[1]:
        raise invalid("dimensions", f"{dimensions} is above the model's {vectors.shape[1]} dimensions")
    return l2_normalize(vectors[:, :dimensions])


def _base64(vector: np.ndarray) -> str:
    return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")


async def embed_texts(front: Front, model: ServedModel, texts: list[str], truncate: bool, param: str):
    """(EMBEDDING [n, H] float32, prompt tokens) for texts that passed validation."""
    front.check_count(texts, param)
    rows, tokens = model.fit([(t,) for t in texts], truncate, param)
    out = await front.backend.infer(model, {"TEXT": [row[0] for row in rows]})
    return out["EMBEDDING"], tokens


async def openai_embeddings(front: Front, request: Request) -> Response:
    _, body = await front.body(request, schemas.EmbeddingsRequest)
    model = find(await front.catalog(), body.model, (Task.FEATURE_EXTRACTION,), "/v1/embeddings")
    vectors, tokens = await embed_texts(front, model, body.input, True, "input")
    if body.dimensions is not None:
        vectors = shorten(model, vectors, body.dimensions)
    encode = _base64 if body.encoding_format == "base64" else (lambda v: v)
    data = [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return json_response({"object": "list", "data": data, "model": model.name, "usage": usage})


async def openai_models(front: Front, request: Request) -> Response:
    models = await front.catalog()
    data = [
        {"id": name, "object": "model", "created": front.settings.created, "owned_by": "kubeformer",
         "task": model.task.value}
        for name, model in sorted(models.items())
    ]  # fmt: skip
    return json_response({"object": "list", "data": data})


async def tei_embed(front: Front, request: Request) -> Response:
    _, body = await front.body(request, schemas.EmbedRequest)
    model = find(await front.catalog(), body.model, (Task.FEATURE_EXTRACTION,), "/embed")
    if not body.normalize and model.info.normalized:
        raise invalid("normalize", f"{model.name!r} normalizes its embeddings; false cannot be honoured")
    vectors, _ = await embed_texts(front, model, body.inputs, body.truncate, "inputs")
    return json_response(l2_normalize(vectors) if body.normalize else vectors)


PREDICT_TASKS = (Task.TEXT_CLASSIFICATION, Task.TOKEN_CLASSIFICATION, Task.QUESTION_ANSWERING)


def _predict_rows(model: ServedModel, inputs) -> list[tuple[str, ...]]:
    """The validated `inputs` as rows of one or two texts; the columns follow once they fit."""
    if model.task is Task.QUESTION_ANSWERING:
        return [(q.question, q.context) for q in schemas.predict_inputs("questions", inputs)]
    if model.task is Task.TOKEN_CLASSIFICATION:
        return [(t,) for t in schemas.predict_inputs("texts", inputs)]
    rows = schemas.predict_inputs("sequences", inputs)
    sizes = {len(row) for row in rows}
    if 2 in sizes and not model.info.takes_pairs:
        index = next(i for i, row in enumerate(rows) if len(row) == 2)
        raise invalid(f"inputs[{index}]", f"{model.name!r} takes single texts, not [text, text_pair]")
    if len(sizes) > 1:
        raise invalid("inputs", "mixes single texts and [text, text_pair] pairs; send one kind per request")
    return rows


def _columns(model: ServedModel, rows: list[tuple[str, ...]]) -> dict[str, list[str]]:
    if model.task is Task.QUESTION_ANSWERING:
        return {"QUESTION": [r[0] for r in rows], "CONTEXT": [r[1] for r in rows]}
    columns = {"TEXT": [r[0] for r in rows]}
    if len(rows[0]) == 2:
        columns["TEXT_PAIR"] = [r[1] for r in rows]
    return columns


async def predict(front: Front, request: Request) -> Response:
    raw, body = await front.body(request, schemas.PredictRequest)
    model = find(await front.catalog(), body.model, PREDICT_TASKS, "/predict")
    rows = _predict_rows(model, body.inputs)
    front.check_count(rows, "inputs")
    rows, _ = model.fit(rows, body.truncate, "inputs")
    columns = _columns(model, rows)
    answers = readable_answers(model.info, columns, await front.backend.infer(model, columns))
    if model.task is Task.TEXT_CLASSIFICATION:
        result = [answer["labels"] for answer in answers]
    elif model.task is Task.TOKEN_CLASSIFICATION:
        result = [answer["entities"] for answer in answers]
    else:
        result = [{k: v for k, v in answer.items() if k != "question"} for answer in answers]
    single = isinstance(raw.get("inputs"), str | dict)
    return json_response(result[0] if single else result)


async def tei_rerank(front: Front, request: Request) -> Response:
    _, body = await front.body(request, schemas.RerankRequest)
    model = find(await front.catalog(), body.model, (Task.TEXT_CLASSIFICATION,), "/rerank")
    try:
        if not model.info.takes_pairs:
            raise ConfigError(f"{model.name}: takes single texts; rerank needs a pair (cross-encoder) model")
        check_cross_encoder(model.info)
    except ConfigError as error:
        raise invalid("model", str(error)) from None
    front.check_count(body.texts, "texts")
    rows, _ = model.fit([(body.query, text) for text in body.texts], body.truncate, "texts")
    logits = (await front.backend.infer(model, _columns(model, rows)))["LOGITS"]
    results = ranked(logits, body.texts, body.top_n, body.return_text)
    return json_response(
        [
            {
                "index": r["index"],
                "score": r["relevance_score"],
                **({"text": r["document"]} if body.return_text else {}),
            }
            for r in results
        ]
    )


async def health_live(front: Front, request: Request) -> Response:
    return json_response({"status": "live"})


async def health_ready(front: Front, request: Request) -> Response:
    """200 when Triton says it is ready (and the models are known), else 503."""
    if not await front.backend.ready():
        raise ApiError(503, "Triton is not ready", code="triton_not_ready")
    await front.catalog()
    return json_response({"status": "ready"})


async def metrics(front: Front, request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _endpoint(front: Front, handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(front, request)
        except ApiError as error:
            return error.response()
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return ApiError(500, "internal error; the server log has the details").response()

    return endpoint


ROUTES = (
    ("/v1/embeddings", openai_embeddings, "POST"),
    ("/v1/models", openai_models, "GET"),
    ("/embed", tei_embed, "POST"),
    ("/rerank", tei_rerank, "POST"),
    ("/predict", predict, "POST"),
    ("/health", health_ready, "GET"),
    ("/health/live", health_live, "GET"),
    ("/health/ready", health_ready, "GET"),
    ("/metrics", metrics, "GET"),
)


async def _http_error(request: Request, error: HTTPException) -> Response:
    return ApiError(error.status_code, f"{request.method} {request.url.path}: {error.detail}").response()


def create_app(settings: ApiSettings) -> Starlette:
    """The front as an ASGI app; it connects to Triton when the server starts it (lifespan)."""
    front = Front(settings)
    routes = [Route(path, _endpoint(front, handler), methods=[method]) for path, handler, method in ROUTES]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        front.backend = TritonBackend(settings.triton_url)
        try:
            yield
        finally:
            await front.backend.close()

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.state.metrics = Metrics(tuple(path for path, _, _ in ROUTES))
    app.state.front = front
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app

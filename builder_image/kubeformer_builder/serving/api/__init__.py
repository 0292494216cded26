"""The client API front: OpenAI `/v1/embeddings`, text-embeddings-inference-style `/embed`, `/rerank`
and `/predict`, beside Triton, so clients call a kubeformer model with the SDKs they already use.

Choices, and why:

- Starlette on uvicorn (with uvloop and httptools), orjson, pydantic v2. Starlette is the ASGI core
  under FastAPI without FastAPI's per-request dependency and serialization machinery; the front has
  eight routes and validates with pydantic itself, so FastAPI would add cost and nothing else.
  uvicorn is the most used ASGI server (kept by the Encode team), and with uvloop + httptools it is
  among the fastest; orjson serializes the embedding arrays straight from numpy
  (OPT_SERIALIZE_NUMPY), several times faster than `json` on float lists. The measured cost of the
  front is in benchmarks/serving/README.md.
- Triton over loopback gRPC with tritonclient's asyncio client by default (`http://` works too):
  gRPC measured faster than HTTP/JSON-over-aiohttp for the same requests (benchmarks/serving).
- No batching in the front: one client request is one Triton request (split only above the
  ensemble's max_batch_size); Triton's dynamic batcher stays the one place that batches.

Modules: app (routes), schemas (request validation), catalog (served models, their tokenizers),
backend (Triton client), body (capped body reading), errors, metrics, server (uvicorn).
"""

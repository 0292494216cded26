"""The client API front: OpenAI `/v1/embeddings`, text-embeddings-inference-style `/embed`, `/rerank`
and `/predict`, beside Triton, so clients call a kubeformer model with the SDKs they already use.

Choices, and why:

- Starlette on uvicorn (uvloop and httptools, from uvicorn[standard]), orjson, pydantic v2.
  Starlette is the ASGI core under FastAPI without FastAPI's per-request dependency injection and
  response-model serialization; the front has a handful of routes and validates with pydantic
  itself, so FastAPI would add work per request and nothing the front uses. uvicorn is the most
  used ASGI server (kept by the Encode team); orjson writes the embedding arrays straight from
  numpy (OPT_SERIALIZE_NUMPY) instead of through Python float lists. These were chosen, not
  measured against FastAPI or granian; what was measured is the front's cost end to end
  (benchmarks/serving/README.md): on the loaded 2-core machine /v1/embeddings through the front
  was not slower than Triton's own v2 HTTP/JSON route at concurrency 1 and 32.
- Triton over loopback gRPC with tritonclient's asyncio client by default (`http://` works too):
  in the same benchmark gRPC gave 1.02x to 1.35x the throughput of tritonclient's aiohttp client.
- No batching in the front: one client request is one Triton request (split only above the
  ensemble's max_batch_size); Triton's dynamic batcher stays the one place that batches.

Modules: app (routes), schemas (request validation), catalog (served models, their tokenizers),
backend (Triton client), body (capped body reading), errors, metrics, server (uvicorn).
"""

"""Triton over the pod's loopback, with tritonclient's asyncio clients (gRPC or HTTP, by URL scheme).

The front adds no batching: each request becomes one Triton request (split only where it holds more
texts than the ensemble's max_batch_size), and Triton's dynamic batcher merges requests as it would
merge any client's.
"""

from __future__ import annotations

import asyncio

import numpy as np
from tritonclient.utils import InferenceServerException

from kubeformer_builder.serving.api.catalog import ServedModel, parse_served, tokenizer_path
from kubeformer_builder.serving.api.errors import ApiError
from kubeformer_builder.serving.client import parse_url

SAMPLE_INDEX = "SAMPLE_INDEX"
# gRPC status names and HTTP codes under which Triton (or the way to it) cannot serve right now.
_UNAVAILABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "503", "None")


def _unavailable(error: Exception) -> ApiError:
    return ApiError(503, f"Triton is not available: {error}", code="triton_unavailable")


class TritonBackend:
    """One asyncio connection to Triton, opened in the serving event loop (`url`: grpc:// or http://)."""

    def __init__(self, url: str):
        target = parse_url(url)
        self.grpc = target.protocol == "grpc"
        if self.grpc:
            import tritonclient.grpc.aio as module
        else:
            import tritonclient.http.aio as module
        self.module = module
        self.client = module.InferenceServerClient(target.address)

    async def close(self) -> None:
        await self.client.close()

    async def ready(self) -> bool:
        try:
            return bool(await self.client.is_server_ready())
        except Exception:  # refused, reset, timed out: all mean "not ready" to a probe
            return False

    async def _config(self, name: str) -> dict:
        if self.grpc:
            return (await self.client.get_model_config(name, as_json=True))["config"]
        return await self.client.get_model_config(name)

    async def load_models(self, repositories) -> dict[str, ServedModel]:
        """Every ready kubeformer ensemble Triton serves, by name."""
        try:
            index = await self.client.get_model_repository_index(**({"as_json": True} if self.grpc else {}))
            entries = index.get("models", []) if self.grpc else index
            names = [m["name"] for m in entries if m.get("state") == "READY"]
            models = {}
            for name in names:
                config = await self._config(name)
                if config.get("platform") != "ensemble":
                    continue
                models[name] = parse_served(
                    config,
                    await self._config(f"{name}_tokenizer"),
                    await self._config(f"{name}_model"),
                    tokenizer_path(repositories, name),
                )
            return models
        except InferenceServerException as error:
            raise _unavailable(error) from error
        except OSError as error:
            raise _unavailable(error) from error

    async def infer(self, model: ServedModel, columns: dict[str, list[str]]) -> dict[str, np.ndarray]:
        """The ensemble's outputs for rows given per input name, in row order."""
        count = len(next(iter(columns.values())))
        step = max(1, model.info.max_batch_size)
        starts = range(0, count, step)
        parts = await asyncio.gather(
            *(
                self._infer(model.name, {k: v[start : start + step] for k, v in columns.items()})
                for start in starts
            )
        )
        if len(parts) == 1:
            return parts[0]
        for start, part in zip(starts, parts, strict=True):
            if SAMPLE_INDEX in part:  # QA: rows of a part point at that part's questions
                part[SAMPLE_INDEX] = part[SAMPLE_INDEX] + start
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    async def _infer(self, name: str, columns: dict[str, list[str]]) -> dict[str, np.ndarray]:
        inputs = []
        for column, texts in columns.items():
            tensor = self.module.InferInput(column, [len(texts), 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_))
            inputs.append(tensor)
        try:
            result = await self.client.infer(name, inputs)
        except InferenceServerException as error:
            if str(error.status()) in _UNAVAILABLE:
                raise _unavailable(error) from error
            raise ApiError(
                502, f"Triton refused the request: {error.message()}", code="triton_error"
            ) from error
        except OSError as error:
            raise _unavailable(error) from error
        response = result.get_response(as_json=True) if self.grpc else result.get_response()
        return {output["name"]: result.as_numpy(output["name"]) for output in response["outputs"]}

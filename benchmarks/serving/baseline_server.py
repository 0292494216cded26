"""The baseline: a PyTorch transformers pipeline behind FastAPI/uvicorn, how many teams serve first.

POST /predict {"text": "..."} answers with the pipeline's output (mean-pooled, normalized embedding
for feature-extraction, as sentence-transformers does). Run as its own process by bench_serving.py:
    python baseline_server.py MODEL_DIR TASK PORT
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline


class Request(BaseModel):
    text: str


def make_app(model_dir: str, task: str) -> FastAPI:
    runner = pipeline(task, model=model_dir, device=-1, dtype=torch.float32)
    app = FastAPI()

    @app.post("/predict")
    def predict(request: Request) -> dict:  # sync: FastAPI runs it in its thread pool
        with torch.inference_mode():
            output = runner(request.text, truncation=True)
        if task == "feature-extraction":
            pooled = np.asarray(output[0]).mean(axis=0)
            return {"embedding": (pooled / np.linalg.norm(pooled)).tolist()}
        return {"output": output}

    return app


if __name__ == "__main__":
    model_dir, task, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    uvicorn.run(make_app(model_dir, task), host="127.0.0.1", port=port, log_level="warning")

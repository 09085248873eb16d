"""Baseline servers for the serving benchmarks: plain FastAPI endpoints under the same uvicorn settings as luodi.

    python benchmarks/serve_baseline.py --kind bare --port 8001
    python benchmarks/serve_baseline.py --kind inline --package PATH --port 8002

- bare: `POST /predict` returns a constant JSON body without reading the request: the floor of FastAPI +
  uvicorn (httptools, uvloop, no access log, one process), what luodi's overhead is measured against.
- inline: the common hand-written server: a pydantic request model, then the model run inline in the
  `async def` on that one request (no batching), the response serialized by FastAPI.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

CONSTANT = b'{"model":"m","version":1,"predictions":[{"prediction":"yes","probabilities":{"no":0.1,"yes":0.9}}]}'


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict() -> Response:
        return Response(CONSTANT, media_type="application/json")

    return app


def inline_app(package_path: str, threads: int) -> FastAPI:
    import torch
    from pydantic import BaseModel

    from luodi.package import load_package

    torch.set_num_threads(threads)
    package = load_package(package_path)

    class Request(BaseModel):
        records: list[dict[str, Any]]

    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        with torch.inference_mode():
            result = package.predict(request.records)
        if result.probabilities is None:
            return {"predictions": [{"prediction": value} for value in result.predictions]}
        names = package.pipeline.target.class_names
        return {"predictions": [{"prediction": value, "probabilities": dict(zip(names, row, strict=True))}
                                for value, row in zip(result.predictions, result.probabilities.tolist(), strict=True)]}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["bare", "inline"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--package")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    app = bare_app() if args.kind == "bare" else inline_app(args.package, args.threads)
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning", server_header=False)


if __name__ == "__main__":
    main()

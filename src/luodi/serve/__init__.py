"""Serving: `luodi serve NAME@ALIAS` puts a registered model behind HTTP (see docs/serving.md).

    settings.py    ServeConfig: limits, batching, keys, workers; the bind rule
    schema.py      request/response schemas and column decoding from the package's input schema
    v2.py          Open Inference Protocol v2: JSON and binary tensor requests and responses
    batcher.py     the per-model queue: adaptive dynamic batching, bounded, with deadlines
    backends.py    torch eager and ONNX Runtime
    model.py       a served model: load, warm up, run a batch with bad-row isolation, hot swap
    middleware.py  API keys, body size while reading, content types
    metrics.py     Prometheus metrics (multiprocess-safe)
    predlog.py     the sampled prediction log (Parquet, bounded and rotated)
    app.py         create_app: routes and lifespan
    server.py      one process with draining, or a supervisor of N worker processes
"""

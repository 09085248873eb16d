"""Serving: `luodi serve NAME@ALIAS` puts a registered model behind HTTP (see docs/serving.md).

    settings.py    ServeConfig: limits, batching, keys, workers; the bind rule
    schema.py      request/response schemas and column decoding from the package's input schema
    v2.py          Open Inference Protocol v2: JSON and binary tensor requests and responses
    batcher.py     the per-model queue: adaptive dynamic batching, bounded, with deadlines
    backends.py    torch eager and ONNX Runtime
    model.py       a served model: preflight, load, warm up, run a batch with bad-row isolation, hot swap
    replies.py     whole and streamed replies (chunked, server-sent events), the error shapes, open streams
    middleware.py  the Gate: API keys, content types, body size while reading, metrics, the fast-path Endpoints
    inference.py   the /v1 predict and /v2 infer endpoints
    routes.py      FastAPI routes: health, metadata, metrics, admin
    openapi.py     the OpenAPI document, one concrete path per served model
    state.py       what the routes share; reload polling
    metrics.py     Prometheus metrics (multiprocess-safe)
    predlog.py     the sampled prediction log (Parquet, bounded and rotated)
    live.py        live drift gauges, quality counters and alerts from the log's rows
    livewindows.py the live monitoring process: windows tested against the profile, off the server's interpreter
    app.py         create_app: the Gate in front of FastAPI; models load in the lifespan
    server.py      one process with draining, or a supervisor of N worker processes
"""

"""The Python API: one function per lifecycle verb. The CLI is a thin layer over these functions; `train` is
the training job in `jobs/train.py`, re-exported here.

    import luodi.api as luodi
    result = luodi.train("luodi.yaml")
    frame = luodi.predict("churn@latest", [{"tenure": 3, "contract": "monthly"}])

The verbs live in one module per part of the lifecycle (training, registry, prediction, language, optimization,
serving); every name is importable from `luodi.api`, which is where callers (and monkeypatches) find it.
Heavy modules (torch, pyarrow, pandas, sklearn) are imported inside the functions so that `import luodi.api` and
`luodi --help` stay fast.
"""

from __future__ import annotations

from luodi.api.language import chat, embed, generate, import_gguf, merge, quantize_int8
from luodi.api.optimization import _split_rows as _split_rows  # a package's encoded splits (tests use it)
from luodi.api.optimization import export, optimize
from luodi.api.prediction import compare, evaluate, explain, predict, predict_text, write_table
from luodi.api.registry import history, list_models, list_runs, load_model, promote, rollback, show_model, show_run
from luodi.api.serving import feedback, monitor, serve, ui
from luodi.api.training import InitResult, init, train_distributed
from luodi.errors import InputError
from luodi.jobs.distributed import Launch  # how train_distributed starts torchrun
from luodi.jobs.retrain import RetrainResult, retrain  # the retrain verb and its result
from luodi.jobs.train import TrainResult, train  # the API's train verb and its result
from luodi.jobs.tune import TuneResult, tune  # the API's tune verb and its result
from luodi.store import ModelVersion, Run, Store  # what the registry verbs return, and the store they read

__all__ = [
    "InitResult", "InputError", "Launch", "ModelVersion", "RetrainResult", "Run", "Store", "TrainResult",
    "TuneResult", "chat", "compare", "embed", "evaluate", "explain", "export", "feedback",
    "generate", "history", "import_gguf", "init", "list_models", "list_runs", "load_model", "merge", "monitor",
    "optimize", "predict", "predict_text", "promote", "quantize_int8", "retrain", "rollback", "serve",
    "show_model", "show_run", "train", "train_distributed", "tune", "ui", "write_table",
]

"""`luodi quickstart`: the whole lifecycle on scikit-learn's breast-cancer data, through the code users run:
init, train, evaluate, predict, optimize, then serve the model over HTTP for a few requests."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from luodi import api

QUICK_VARIANTS = ("onnx", "onnx-int8-dynamic")  # the quick ones: a second or two on a small MLP (docs/optimize.md)


def write_breast_cancer(folder: Path, holdout_fraction: float = 0.1, seed: int = 0) -> dict[str, Path]:
    """breast_cancer as CSV files: train.csv, holdout.csv (labelled) and new.csv (holdout without labels)."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.copy()
    frame["diagnosis"] = np.where(bunch.target == 0, "malignant", "benign")
    frame = frame.drop(columns=["target"])
    frame.columns = [column.replace(" ", "_") for column in frame.columns]
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(len(frame) * holdout_fraction)
    holdout, train = frame.iloc[order[:cut]], frame.iloc[order[cut:]]
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"train": folder / "breast_cancer.csv", "holdout": folder / "holdout.csv", "new": folder / "new.csv"}
    train.to_csv(paths["train"], index=False)
    holdout.to_csv(paths["holdout"], index=False)
    holdout.drop(columns=["diagnosis"]).to_csv(paths["new"], index=False)
    return paths


def serve_and_call(model: str, new: Path, home: Path | None, say: Any, count: int = 3) -> list[dict[str, Any]]:
    """Serve the model on a free 127.0.0.1 port, POST a few rows with a real HTTP client, print, stop the server."""
    import json
    import urllib.request

    import pandas as pd

    from luodi.serve.model import Reference
    from luodi.serve.server import background
    from luodi.serve.settings import make_config

    rows = pd.read_csv(new).head(count).to_dict(orient="records")
    calls = []
    config = make_config(port=0, reload_interval_s=0, log_sample_rate=0)
    with background([Reference(model, Path(home) if home else None)], config, Path(home) if home else None,
                    log_level="warning") as running:
        url = f"{running.url}/v1/models/{model.split('/')[0]}/predict"
        say(f"6/6 serve     POST {url}: {count} rows of {new.name}, one request each")
        for row in rows:
            request = urllib.request.Request(url, json.dumps({"records": [row]}).encode(),
                                             {"Content-Type": "application/json"})
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
                status = response.status
            milliseconds = (time.perf_counter() - started) * 1000
            prediction = answer["predictions"][0]
            calls.append({"status": status, "milliseconds": round(milliseconds, 2), **prediction})
            shown = {label: round(value, 4) for label, value in prediction.get("probabilities", {}).items()}
            say(f"              {status} {prediction['prediction']} {json.dumps(shown)} in {milliseconds:.1f} ms")
    return calls


def run(workdir: Path | None = None, home: Path | None = None, progress: str = "auto",
        quiet: bool = False) -> dict[str, Any]:
    """Write the data, then init, train, evaluate and predict; print a short summary; return it."""
    started = time.perf_counter()
    folder = (Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="luodi-quickstart-"))).resolve()

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    say(f"luodi quickstart: breast-cancer data in {folder}")
    paths = write_breast_cancer(folder)
    config = folder / "luodi.yaml"
    initialized = api.init(paths["train"], "diagnosis", output=config, name="breast-cancer", force=True)
    say(f"1/6 init      {config}: {initialized.task}, {len(initialized.features)} features")
    trained = api.train(config, home=home, progress=progress)
    assert trained.model is not None  # registered
    model = f"{trained.model['name']}/{trained.model['version']}"
    say(f"2/6 train     run {trained.run_id}: {model}, test accuracy {trained.metrics['accuracy']:.4f}, "
        f"best epoch {trained.best_epoch}/{trained.epochs_run}, {trained.seconds:.1f} s")
    evaluated = api.evaluate(model, paths["holdout"], home=home)
    say(f"3/6 evaluate  holdout.csv ({evaluated['rows']} rows): accuracy {evaluated['metrics']['accuracy']:.4f}, "
        f"roc_auc {evaluated['metrics']['roc_auc']:.4f}")
    scored = folder / "scored.csv"
    frame = api.predict(model, paths["new"], out=scored, home=home)
    say(f"4/6 predict   new.csv -> {scored} ({len(frame)} rows)")
    preview = frame[["diagnosis_prediction", "diagnosis_probability_malignant"]].head(3)
    say(preview.to_string(index=False))
    optimized = api.optimize(model, batch_sizes=(1, 32), variants=QUICK_VARIANTS, home=home)
    say(f"5/6 optimize  {', '.join(QUICK_VARIANTS)} against eager fp32 on the validation split: "
        f"{optimized['verdict']}")
    if optimized["registered"]:
        model = optimized["registered"]
    served = serve_and_call(model, paths["new"], home, say)
    summary = {
        "workdir": str(folder), "config": str(config), "run_id": trained.run_id, "model": trained.model,
        "package": trained.package, "test_metrics": trained.metrics, "holdout_metrics": evaluated["metrics"],
        "scored": str(scored), "report": trained.report,
        "optimized": {key: optimized[key] for key in ("registered", "chosen", "verdict", "report")},
        "holdout_report": evaluated["report"], "served": served,
        "seconds": round(time.perf_counter() - started, 2),
    }
    say(f"done in {summary['seconds']:.1f} s. The report: {trained.report}")
    say(f"Next: luodi serve {model} · luodi explain {model} --data {paths['new']} · luodi models show {model}")
    return summary

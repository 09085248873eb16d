"""`luodi quickstart`: the whole lifecycle on scikit-learn's breast-cancer data, through the code users run:
init, train, evaluate, predict, optimize, then serve the model over HTTP for a few requests, and close the loop:
drifted traffic, the monitor flags it, labels come back, a retrained challenger wins and the server reloads it."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from luodi import api

QUICK_VARIANTS = ("onnx", "onnx-int8-dynamic")  # the quick ones: a second or two on a small MLP (docs/optimize.md)

def write_breast_cancer(folder: Path, holdout_fraction: float = 0.1, seed: int = 0,
                        traffic_fraction: float = 0.0) -> dict[str, Path]:
    """breast_cancer as CSV files: train.csv, holdout.csv (labelled), new.csv (holdout without labels) and, with
    `traffic_fraction`, traffic.csv: labelled rows kept out of training for the closed loop's production traffic."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.copy()
    frame["diagnosis"] = np.where(bunch.target == 0, "malignant", "benign")
    frame = frame.drop(columns=["target"])
    frame.columns = [column.replace(" ", "_") for column in frame.columns]
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(len(frame) * holdout_fraction)
    kept = cut + int(len(frame) * traffic_fraction)
    holdout, traffic, train = frame.iloc[order[:cut]], frame.iloc[order[cut:kept]], frame.iloc[order[kept:]]
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"train": folder / "breast_cancer.csv", "holdout": folder / "holdout.csv", "new": folder / "new.csv"}
    if traffic_fraction:
        paths["traffic"] = folder / "traffic.csv"
        traffic.to_csv(paths["traffic"], index=False)
    train.to_csv(paths["train"], index=False)
    holdout.to_csv(paths["holdout"], index=False)
    holdout.drop(columns=["diagnosis"]).to_csv(paths["new"], index=False)
    return paths


def post_json(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    """POST JSON with the standard library's HTTP client; (status, decoded answer)."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def serve_and_loop(name: str, paths: dict[str, Path], home: Path | None, say: Any, count: int = 3
                   ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Serve `name@production` on a free 127.0.0.1 port, POST a few rows with a real HTTP client, then run the closed
    loop against the running server; stop it. Returns the calls and the loop's summary."""
    import pandas as pd

    from luodi.serve.model import Reference
    from luodi.serve.server import background
    from luodi.serve.settings import make_config

    rows = pd.read_csv(paths["new"]).head(count).to_dict(orient="records")
    calls = []
    config = make_config(port=0, reload_interval_s=0.2, log_flush_s=0.2)
    with background([Reference(f"{name}@production", home)], config, home, log_level="warning") as running:
        url = f"{running.url}/v1/models/{name}/predict"
        say(f"6/7 serve     POST {url}: {count} rows of {paths['new'].name}, one request each")
        for row in rows:
            started = time.perf_counter()
            status, answer = post_json(url, {"records": [row]})
            milliseconds = (time.perf_counter() - started) * 1000
            prediction = answer["predictions"][0]
            calls.append({"status": status, "milliseconds": round(milliseconds, 2), **prediction})
            shown = {label: round(value, 4) for label, value in prediction.get("probabilities", {}).items()}
            say(f"              {status} {prediction['prediction']} {json.dumps(shown)} in {milliseconds:.1f} ms")
        loop = closed_loop(running.url, name, paths["traffic"], home, say)
    return calls, loop


def closed_loop(url: str, name: str, traffic: Path, home: Path | None, say: Any) -> dict[str, Any]:
    """Drifted traffic (a new scanner reads every size 1.5x) -> monitor flags it -> the true diagnoses come back
    as feedback -> retrain -> the challenger is promoted -> the server reloads it."""
    import pandas as pd

    frame = pd.read_csv(traffic)
    sizes = [column for column in frame.columns if column.split("_")[-1] in ("radius", "perimeter", "area")]
    frame[sizes] *= 1.5
    truth = frame.pop("diagnosis").tolist()
    labels = []
    for start in range(0, len(frame), 50):
        _, answer = post_json(f"{url}/v1/models/{name}/predict",
                              {"records": frame.iloc[start:start + 50].to_dict(orient="records")})
        labels += [{"request_id": answer["request_id"], "row": row, "target": truth[start + row]}
                   for row in range(len(answer["predictions"]))]
    time.sleep(0.5)  # the server writes its prediction log every 0.2 s
    monitored = api.monitor(f"{name}@production", home=home)
    drifted = monitored.to_dict()["drifted"]
    say(f"7/7 loop      {len(frame)} rows from a new scanner (sizes read 1.5x): drift in {len(drifted)} of "
        f"{len(monitored.features) + len(monitored.outputs)} features and outputs ({', '.join(drifted[:3])}, ...)")
    status, _ = post_json(f"{url}/v1/models/{name}/feedback", {"feedback": labels})
    live = api.monitor(f"{name}@production", home=home).live
    say(f"              POST /v1/models/{name}/feedback: {status}, {len(labels)} true diagnoses; live accuracy "
        f"{live['metrics']['accuracy']:.4f}")
    decision = api.retrain(name, home=home, reason=f"drift in {', '.join(drifted)}")
    champion, challenger = decision.champion, decision.challenger or {}
    before, after = champion["metrics"], challenger.get("metrics", {})
    say(f"              retrain on {decision.holdout_rows} fresh labelled rows: champion v{champion['version']} "
        f"accuracy {before.get('accuracy', 0):.4f} {decision.metric} {before.get(decision.metric, 0):.4f}, "
        f"challenger v{challenger.get('version')} accuracy {after.get('accuracy', 0):.4f} {decision.metric} "
        f"{after.get(decision.metric, 0):.4f}: {'promoted' if decision.promoted else 'not promoted'}")
    version = champion["version"]
    deadline = time.monotonic() + 30
    while decision.promoted and time.monotonic() < deadline:
        status, answer = post_json(f"{url}/v1/models/{name}/predict", {"records": frame.iloc[:1].to_dict(
            orient="records")})
        version = answer["version"]
        if version == challenger["version"]:
            break
        time.sleep(0.2)
    say(f"              the server now answers from v{version} (hot reload of {name}@production)")
    return {"drifted": drifted, "live": live["metrics"], "retrain": decision.to_dict(), "served_version": version}


def run(workdir: Path | None = None, home: Path | None = None, progress: str = "auto",
        quiet: bool = False) -> dict[str, Any]:
    """Write the data, then init, train, evaluate and predict; print a short summary; return it."""
    started = time.perf_counter()
    folder = (Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="luodi-quickstart-"))).resolve()

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    say(f"luodi quickstart: breast-cancer data in {folder}")
    paths = write_breast_cancer(folder, traffic_fraction=0.25)
    config = folder / "luodi.yaml"
    initialized = api.init(paths["train"], "diagnosis", output=config, name="breast-cancer", force=True)
    say(f"1/7 init      {config}: {initialized.task}, {len(initialized.features)} features")
    trained = api.train(config, home=home, progress=progress)
    assert trained.model is not None  # registered
    model = f"{trained.model['name']}/{trained.model['version']}"
    say(f"2/7 train     run {trained.run_id}: {model}, test accuracy {trained.metrics['accuracy']:.4f}, "
        f"best epoch {trained.best_epoch}/{trained.epochs_run}, {trained.seconds:.1f} s")
    evaluated = api.evaluate(model, paths["holdout"], home=home)
    say(f"3/7 evaluate  holdout.csv ({evaluated['rows']} rows): accuracy {evaluated['metrics']['accuracy']:.4f}, "
        f"roc_auc {evaluated['metrics']['roc_auc']:.4f}")
    scored = folder / "scored.csv"
    frame = api.predict(model, paths["new"], out=scored, home=home)
    say(f"4/7 predict   new.csv -> {scored} ({len(frame)} rows)")
    preview = frame[["diagnosis_prediction", "diagnosis_probability_malignant"]].head(3)
    say(preview.to_string(index=False))
    optimized = api.optimize(model, batch_sizes=(1, 32), variants=QUICK_VARIANTS, home=home)
    say(f"5/7 optimize  {', '.join(QUICK_VARIANTS)} against eager fp32 on the validation split: "
        f"{optimized['verdict']}")
    if optimized["registered"]:
        model = optimized["registered"]
    name, version = model.split("/")
    api.promote(name, int(version), "production", reason="quickstart", home=home)
    served, loop = serve_and_loop(name, paths, Path(home) if home else None, say)
    summary = {
        "workdir": str(folder), "config": str(config), "run_id": trained.run_id, "model": trained.model,
        "package": trained.package, "test_metrics": trained.metrics, "holdout_metrics": evaluated["metrics"],
        "scored": str(scored), "report": trained.report,
        "optimized": {key: optimized[key] for key in ("registered", "chosen", "verdict", "report")},
        "holdout_report": evaluated["report"], "served": served, "loop": loop,
        "seconds": round(time.perf_counter() - started, 2),
    }
    say(f"done in {summary['seconds']:.1f} s. The report: {trained.report}")
    say(f"Next: luodi serve {model} · luodi explain {model} --data {paths['new']} · luodi models history "
        f"{trained.model['name']}")
    return summary

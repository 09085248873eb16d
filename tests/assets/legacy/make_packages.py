"""Write the legacy package fixtures: packages trained by luodi as it was before the task table (commit edb66bf),
with the records they were asked about and the predictions they gave, to the last bit.

    git worktree add /tmp/luodi-before edb66bf
    PYTHONPATH=/tmp/luodi-before/src .venv/bin/python tests/assets/legacy/make_packages.py tests/assets/legacy

Run once with the old code; the files are committed. tests/integration/test_legacy_packages.py loads every
package with today's code and checks that it predicts exactly what the old code predicted.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import luodi.api as api


def table(rows: int, seed: int) -> pd.DataFrame:
    """Numbers (one with gaps), a category, a yes/no column and a short free text."""
    rng = np.random.default_rng(seed)
    size = rng.normal(0, 1, rows).round(4)
    age = rng.integers(18, 80, rows).astype(float)
    income = rng.normal(50, 15, rows).round(2)
    income[rng.random(rows) < 0.05] = np.nan
    color = rng.choice(["red", "green", "blue", "violet"], rows, p=[0.4, 0.3, 0.2, 0.1])
    member = rng.choice(["yes", "no"], rows)
    words = rng.choice(["quiet street", "near the metro", "sunny balcony", "needs some work", "big garden"], rows)
    notes = [f"flat with {w} and more" for w in words]
    score = size + 0.03 * (age - 50) + 0.8 * (color == "red") + 0.4 * (member == "yes") + rng.normal(0, 0.5, rows)
    return pd.DataFrame({"size": size, "age": age, "income": income, "color": color, "member": member,
                         "notes": notes, "score": score.round(4),
                         "label": np.where(score > 0.3, "yes", "no"),
                         "level": np.select([score < -0.3, score < 0.7], ["low", "mid"], "high")})


FEATURES = [{"name": "size", "type": "numeric"}, {"name": "age", "type": "numeric"},
            {"name": "income", "type": "numeric"}, {"name": "color", "type": "category"},
            {"name": "member", "type": "binary"}]
MODELS = {
    "binary": ("label", "binary", FEATURES + [{"name": "notes", "type": "text", "tokenizer": "bag_of_words",
                                               "max_tokens": 20}], {"hidden_sizes": [8]}),
    "multiclass": ("level", "multiclass", FEATURES, {"hidden_sizes": [8], "normalization": "layer"}),
    "regression": ("score", "regression", FEATURES, {"hidden_sizes": [8, 4]}),
    "text-rnn": ("label", "binary", [{"name": "notes", "type": "text", "tokenizer": "bpe", "vocab_size": 300,
                                      "max_length": 16}],
                 {"type": "rnn", "hidden_sizes": [8], "rnn": {"hidden_size": 8, "embedding_dim": 8}}),
}


def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="luodi-legacy-"))
    frame = table(300, seed=3)
    frame.to_csv(work / "train.csv", index=False)
    records = table(12, seed=4).drop(columns=["score", "label", "level"])
    records.loc[0, "color"] = "orange"  # a category never seen in training: the unknown bucket
    records.loc[1, "income"] = None
    out.mkdir(parents=True, exist_ok=True)
    records.to_csv(out / "records.csv", index=False)
    for name, (target, task, features, model) in MODELS.items():
        config = {"name": f"legacy-{name}", "data": {"train": str(work / "train.csv")},
                  "target": {"name": target, "task": task}, "input_features": features,
                  "model": {"dropout": 0.0, **model}, "report": {"enabled": False},
                  "trainer": {"epochs": 3, "batch_size": 32, "seed": 7}, "runtime": {"device": "cpu", "threads": 1}}
        (work / f"{name}.yaml").write_text(yaml.safe_dump(config))
        result = api.train(work / f"{name}.yaml", home=work / "home", progress="silent")
        destination = out / name
        shutil.rmtree(destination, ignore_errors=True)
        shutil.copytree(result.package, destination)
        predictions = api.predict(destination, out / "records.csv", keep_input=False)
        # JSON keeps every float exactly (repr round-trips); a CSV would round them.
        (out / f"{name}.predictions.json").write_text(json.dumps(predictions.to_dict(orient="list")) + "\n")
        (out / f"{name}.served.json").write_text(served(destination, records) + "\n")
        print(f"{name}: {result.package} -> {destination}")


def served(package: Path, records: pd.DataFrame) -> str:
    """The body of the server's /v1 answer to `records` (one request), as the old server wrote it."""
    import urllib.request

    from luodi.serve.model import Reference
    from luodi.serve.server import background
    from luodi.serve.settings import make_config

    rows = json.loads(records.to_json(orient="records"))  # NaN -> null
    config = make_config(port=0, reload_interval_s=0, log_sample_rate=0)
    with background([Reference(str(package), None)], config, Path(tempfile.mkdtemp()), log_level="warning") as running:
        name = json.loads((package / "package.json").read_text())["name"]
        request = urllib.request.Request(f"{running.url}/v1/models/{name}/predict",
                                         json.dumps({"records": rows}).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read().decode()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

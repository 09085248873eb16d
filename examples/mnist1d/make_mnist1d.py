"""Generate mnist1d (Greydanus 2020: 10 classes of 1-D signals, 40 values each) with the package's own generator
and write it as tables: 3,600 training, 400 validation and the 1,000 standard test rows.

    pip install mnist1d
    python examples/mnist1d/make_mnist1d.py                 # examples/mnist1d/{train,validation,test}.parquet
    python examples/mnist1d/make_mnist1d.py --format csv    # the same as CSV, 40 numbers per cell
    luodi train examples/mnist1d/luodi.yaml

`make_dataset(get_dataset_args())` builds the data locally from its templates (seed 42); nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

VALIDATION_ROWS = 400


def make_tables() -> dict[str, pd.DataFrame]:
    """train / validation / test frames with a `signal` column (40 floats per row) and an integer `label`."""
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    cut = len(x) - VALIDATION_ROWS  # the generator shuffles, so the last rows are a fair validation sample

    def frame(signals: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"signal": list(signals), "label": labels})

    return {"train": frame(x[:cut], y[:cut]), "validation": frame(x[cut:], y[cut:]),
            "test": frame(data["x_test"].astype(np.float32), data["y_test"].astype(np.int64))}


def write(folder: Path, fmt: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, frame in make_tables().items():
        path = folder / f"{split}.{fmt}"
        if fmt == "csv":
            frame.assign(signal=[" ".join(f"{v:.6g}" for v in row) for row in frame["signal"]]).to_csv(
                path, index=False)
        else:
            frame.to_parquet(path, index=False)
        paths.append(path)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder to write")
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    args = parser.parse_args()
    for path in write(args.out, args.format):
        print(f"wrote {path}")

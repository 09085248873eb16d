"""The reference profile: a compact description (kilobytes of JSON) of the training data and the model's outputs,
kept in the package as `profile.json`, against which drift tests compare what a server later sees.

    profile = build_profile(config, train_table, predictions)   # at training time (jobs/train.py)
    entry = profile["features"]["age"]                          # {"type", "rows", "missing", "aspects": {...}}
    current = measure(entry, column)                            # the same aspects of new rows (an Arrow column)

Every feature (and output) has aspects, each a distribution: `numbers` (101 quantiles, the exact CDF at each
distinct quantile, quantile-bin proportions, mean, standard deviation) or `categories` (the most frequent values'
shares and the rest's as 'other'), and rates (the missing rate, a text's out-of-vocabulary rate). A profiler per
feature type (`PROFILERS`) makes both the reference entry and the current measurement, so the two always agree on
what a value is; drift.py compares them and works the same on a window of the prediction log or a live window.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.columns import as_strings
from luodi.config import LuodiConfig, MonitorConfig
from luodi.errors import InputError
from luodi.tasks import Predictions

PROFILE_FILE = "profile.json"
PROFILE_FORMAT = 1
LEVELS = np.linspace(0.0, 1.0, 101)  # the quantile levels kept per number
WORD = re.compile(r"\w+")
MAX_SCORE_PARTS = 20  # scores profiled per output (a classifier's first classes)
IMAGE_SAMPLE = 2000  # images whose headers are read for their size


def _round(values: np.ndarray) -> list[float]:
    """Seven significant digits: the profile stays small and the statistics do not notice."""
    return [float(f"{value:.7g}") for value in np.asarray(values, np.float64).tolist()]


def numbers(values: np.ndarray, bins: int) -> dict[str, Any]:
    """The distribution of finite numbers: quantiles, the CDF at each distinct quantile (at and below it, so atoms
    of discrete data are exact), quantile-bin proportions, mean and standard deviation."""
    values = np.sort(np.asarray(values, np.float64))
    if not len(values):
        return {"kind": "numbers", "count": 0}
    quantiles = np.asarray(_round(np.quantile(values, LEVELS)))
    support = np.unique(quantiles)
    edges = np.unique(np.asarray(_round(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))))
    return {
        "kind": "numbers", "count": len(values), "quantiles": quantiles.tolist(), "support": support.tolist(),
        "cdf": _round(np.searchsorted(values, support, "right") / len(values)),
        "below": _round(np.searchsorted(values, support, "left") / len(values)),
        "edges": edges.tolist(), "proportions": _round(bin_counts(values, edges) / len(values)),
        "mean": float(f"{values.mean():.7g}"), "std": float(f"{values.std():.7g}"),
    }


def bin_counts(values: np.ndarray, edges: list[float] | np.ndarray) -> np.ndarray:
    """Counts per bin: below the first edge, between edges (a value on an edge goes up), above the last."""
    return np.bincount(np.searchsorted(np.asarray(edges, np.float64), values, "right"), minlength=len(edges) + 1)


def categories(values: pa.ChunkedArray | pa.Array, top: int) -> dict[str, Any]:
    """The shares of the `top` most frequent values (ties by value) and of all the others together."""
    present = values.drop_null()
    count = len(present)
    if not count:
        return {"kind": "categories", "count": 0, "values": [], "proportions": [], "other": 0.0}
    counts = pc.value_counts(present)
    pairs = sorted(zip(counts.field("counts").to_pylist(), counts.field("values").to_pylist(), strict=True),
                   key=lambda pair: (-pair[0], pair[1]))[:top]
    kept = sum(number for number, _ in pairs)
    return {"kind": "categories", "count": count, "values": [value for _, value in pairs],
            "proportions": _round(np.array([number for number, _ in pairs]) / count),
            "other": float(f"{(count - kept) / count:.7g}")}


@dataclass
class Measured:
    """New rows of one feature, as its profiler sees them: per aspect the values a distribution test reads
    (finite float64 numbers, or strings), and per rate its (hits, out of) counts."""

    rows: int
    aspects: dict[str, np.ndarray | pa.Array] = field(default_factory=dict)
    rates: dict[str, tuple[int, int]] = field(default_factory=dict)


class Profiler(Protocol):
    """One feature type: its reference entry from training rows, and the same measurements of new rows."""

    def profile(self, column: pa.ChunkedArray, settings: MonitorConfig) -> dict[str, Any]: ...
    def measure(self, column: pa.ChunkedArray, entry: dict[str, Any]) -> Measured: ...


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """float64 with NaN for nulls."""
    return np.asarray(pc.fill_null(pc.cast(column, pa.float64()), np.nan).to_numpy(zero_copy_only=False), np.float64)


def _missing(column: pa.ChunkedArray) -> tuple[int, int]:
    return column.null_count, len(column)


def _rates(measured: Measured) -> dict[str, float]:
    return {name: float(f"{hits / total:.7g}") if total else 0.0 for name, (hits, total) in measured.rates.items()}


def _entry(kind: str, measured: Measured, aspects: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": kind, "rows": measured.rows, "rates": _rates(measured),
            "counts": {name: list(pair) for name, pair in measured.rates.items()}, "aspects": aspects, **extra}


class NumericProfiler:
    """A number: its distribution (non-missing, finite values) and its missing rate."""

    def measure(self, column: pa.ChunkedArray, entry: dict[str, Any]) -> Measured:
        values = _floats(column)
        finite = values[np.isfinite(values)]
        return Measured(len(values), {"value": finite}, {"missing": (len(values) - len(finite), len(values))})

    def profile(self, column: pa.ChunkedArray, settings: MonitorConfig) -> dict[str, Any]:
        measured = self.measure(column, {})
        return _entry("numeric", measured, {"value": numbers(measured.aspects["value"], settings.bins)})


class CategoryProfiler:
    """A category or binary value, spelled as text (as the prediction log stores it): shares and missing rate."""

    def __init__(self, kind: str):
        self.kind = kind

    def measure(self, column: pa.ChunkedArray, entry: dict[str, Any]) -> Measured:
        strings = as_strings(column)
        return Measured(len(strings), {"value": strings.drop_null()}, {"missing": _missing(strings)})

    def profile(self, column: pa.ChunkedArray, settings: MonitorConfig) -> dict[str, Any]:
        measured = self.measure(column, {})
        return _entry(self.kind, measured, {"value": categories(measured.aspects["value"], settings.top_categories)})


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class TextProfiler:
    """Free text: its length in words, its missing (null or empty) rate, and the share of its words outside the
    training split's most frequent ones."""

    def _split(self, column: pa.ChunkedArray) -> tuple[list[list[str]], int]:
        texts = as_strings(column).to_pylist()
        return [words(text) for text in texts if text], sum(1 for text in texts if not text)

    def measure(self, column: pa.ChunkedArray, entry: dict[str, Any]) -> Measured:
        tokens, missing = self._split(column)
        vocabulary = set(entry.get("vocabulary", ()))
        total = sum(len(row) for row in tokens)
        unknown = sum(1 for row in tokens for word in row if word not in vocabulary)
        lengths = np.array([len(row) for row in tokens], np.float64)
        return Measured(len(column), {"length": lengths}, {"missing": (missing, len(column)), "oov": (unknown, total)})

    def profile(self, column: pa.ChunkedArray, settings: MonitorConfig) -> dict[str, Any]:
        tokens, _ = self._split(column)
        frequent = Counter(word for row in tokens for word in row).most_common(settings.text_vocabulary)
        vocabulary = sorted(word for word, _ in frequent)
        measured = self.measure(column, {"vocabulary": vocabulary})
        return _entry("text", measured, {"length": numbers(measured.aspects["length"], settings.bins)},
                      vocabulary=vocabulary)


class ImageProfiler:
    """An image (path or bytes): its size in pixels (headers of a sample) and its brightness (mean gray level of
    the decoded image, 0 to 1), from the same decoding training uses."""

    def __init__(self, pixels: np.ndarray | None = None):
        self.pixels = pixels  # (rows, channels, height, width) uint8, decoded as training decodes them

    def measure(self, column: pa.ChunkedArray, entry: dict[str, Any]) -> Measured:
        from luodi.data.images import BadImage, probe

        items = column.to_pylist()
        step = max(1, len(items) // IMAGE_SAMPLE)
        sizes = []
        for row in range(0, len(items), step):
            if items[row] is None:
                continue
            try:
                sizes.append(probe(items[row], row)[:2])
            except BadImage:
                continue
        width, height = (np.array(side, np.float64) for side in zip(*sizes, strict=True)) if sizes else \
            (np.zeros(0), np.zeros(0))
        aspects: dict[str, Any] = {"width": width, "height": height}
        if self.pixels is not None:
            aspects["brightness"] = self.pixels.reshape(len(self.pixels), -1).mean(axis=1) / 255.0
        return Measured(len(items), aspects, {"missing": _missing(column)})

    def profile(self, column: pa.ChunkedArray, settings: MonitorConfig) -> dict[str, Any]:
        measured = self.measure(column, {})
        return _entry("image", measured, {name: numbers(values, settings.bins)
                                          for name, values in measured.aspects.items()})


class SequenceProfiler:
    """A numeric sequence: the distribution of each row's mean value."""

    def measure(self, column: pa.ChunkedArray, entry: dict[str, Any]) -> Measured:
        means = np.array([np.mean(np.asarray(row, np.float64)) if row else np.nan for row in column.to_pylist()],
                         np.float64)
        finite = means[np.isfinite(means)]
        return Measured(len(means), {"mean": finite}, {"missing": _missing(column)})

    def profile(self, column: pa.ChunkedArray, settings: MonitorConfig) -> dict[str, Any]:
        measured = self.measure(column, {})
        return _entry("sequence", measured, {"mean": numbers(measured.aspects["mean"], settings.bins)})


PROFILERS: dict[str, Profiler] = {
    "numeric": NumericProfiler(), "category": CategoryProfiler("category"), "binary": CategoryProfiler("binary"),
    "text": TextProfiler(), "sequence": SequenceProfiler(),
    # "image" is made per call (it reads the decoded pixels of the training split)
}
OUTPUT_TYPES = {"label": "category", "number": "numeric"}  # scores: one number per part


def output_columns(predictions: Predictions) -> dict[str, tuple[str, pa.ChunkedArray]]:
    """A model's outputs as the prediction log stores them: labels by name, numbers, and each score part as a
    number named `<output>.<part>`; with the profiler type of each."""
    columns: dict[str, tuple[str, pa.ChunkedArray]] = {}
    for output in predictions.outputs:
        spec = output.spec
        if spec.kind == "scores":
            for index, part in enumerate(spec.parts[:MAX_SCORE_PARTS]):
                columns[f"{spec.name}.{part}"] = ("numeric", pa.chunked_array([pa.array(output.data[:, index],
                                                                                        pa.float64())]))
        elif spec.kind in OUTPUT_TYPES:
            data = output.text() if spec.kind == "label" else output.data
            columns[spec.name] = (OUTPUT_TYPES[spec.kind], pa.chunked_array([pa.array(data)]))
    return columns


def sample_rows(rows: int, limit: int, seed: int) -> np.ndarray | None:
    """Sorted row indices of a seeded sample of `limit` rows, or None when all rows fit."""
    if rows <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))


def build_profile(config: LuodiConfig, table: pa.Table, predictions: Predictions | None,
                  pixels: dict[str, np.ndarray] | None = None, *, split: str = "validation") -> dict[str, Any]:
    """The reference profile of the training split's rows (`table`, coerced as training reads it) and of the
    model's outputs on the `split` rows (`predictions`); `pixels` holds the decoded training images by feature."""
    settings = config.monitor
    keep = sample_rows(table.num_rows, settings.profile_rows, config.trainer.seed)
    if keep is not None:
        table = table.take(pa.array(keep))
        pixels = {name: array[keep] for name, array in (pixels or {}).items()}
    features: dict[str, Any] = {}
    by_name = dict(zip(table.column_names, table.columns, strict=True))
    for feature in config.input_features:
        profiler = ImageProfiler((pixels or {}).get(feature.name)) if feature.type == "image" \
            else PROFILERS[feature.type]
        features[feature.name] = profiler.profile(by_name[feature.name], settings)
    outputs = {name: {**PROFILERS[kind].profile(column, settings), "type": kind}
               for name, (kind, column) in output_columns(predictions).items()} if predictions is not None else {}
    return {"format": PROFILE_FORMAT, "rows": table.num_rows, "features": features,
            "outputs": outputs, "outputs_split": split if outputs else None,
            "outputs_rows": len(predictions) if predictions is not None else 0}


def write_profile(folder: Path, profile: dict[str, Any]) -> None:
    """profile.json in an unregistered package folder (the caller lists it with package.add_file)."""
    from luodi.io import atomic_write_text

    atomic_write_text(Path(folder) / PROFILE_FILE, json.dumps(profile, separators=(",", ":"), allow_nan=False))


def read_profile(package: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """A verified package's profile; a package trained before profiles (or with monitor.profile off) has none."""
    if PROFILE_FILE not in manifest.get("files", {}):
        raise InputError(f"{package}: this package has no reference profile ({PROFILE_FILE}): it was trained before "
                         "luodi kept one, or with monitor.profile: false. Train it again (luodi train CONFIG) to "
                         "get one; the new version's profile is what luodi monitor compares against")
    try:
        profile: dict[str, Any] = json.loads((Path(package) / PROFILE_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InputError(f"{package / PROFILE_FILE}: not valid JSON") from None
    if not isinstance(profile, dict) or profile.get("format") != PROFILE_FORMAT:
        raise InputError(f"{package / PROFILE_FILE}: profile format {profile.get('format')!r} is not supported "
                         f"(this luodi reads {PROFILE_FORMAT})")
    return profile

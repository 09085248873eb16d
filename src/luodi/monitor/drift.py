"""Drift tests: does a window of new rows look like the reference profile, feature by feature?

    results = compare(profile["features"]["age"], measure(entry, column), settings)   # -> [Result, ...]

A distribution (profile.py's `numbers` or `categories`) is compared with one test from `DRIFT_TESTS`, chosen by
`MonitorConfig` (`auto`: a p-value test on small windows, a distance on large ones, where any shift is
significant); rates (missing, out-of-vocabulary) by how far they moved and whether that is significant. Tests
read the reference's summary and the window's values (a prediction-log window or a live window), nothing else.

Scores: `ks`, `chi2` and rate tests report a p-value (drift when below the threshold); `psi`, `wasserstein` and
`jensen_shannon` a distance (drift at or above it); a rate test's score is the absolute change of the rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.config import MonitorConfig
from luodi.monitor.profile import Measured, bin_counts

EPSILON = 1e-4  # the smallest share a bin is given: an empty bin on one side does not make a score infinite


@dataclass
class Result:
    """One test of one aspect of one feature (or output) on a window."""

    feature: str
    aspect: str  # "value", "length", "missing", "oov", ...
    test: str
    score: float
    threshold: float
    drift: bool
    rows: int
    statistic: float | None = None  # ks: the largest CDF gap; chi2: the chi-squared sum; a rate: its p-value
    reference: dict[str, Any] = field(default_factory=dict)  # what the page draws: shares per bin or rate
    current: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Score:
    score: float
    threshold: float
    drift: bool
    statistic: float | None = None


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(np.float64)


def _floored(shares: np.ndarray) -> np.ndarray:
    floored = np.maximum(np.asarray(shares, np.float64), EPSILON)
    return floored / floored.sum()


def psi_value(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    expected, actual = _floored(reference), _floored(current)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def js_value(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2: 0 same, 1 disjoint)."""
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(_floored(reference), _floored(current), base=2))


# ------------------------------------------------------------------------------------ binned views
def number_bins(reference: dict[str, Any], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference shares and the window's counts in the reference's quantile bins."""
    return np.asarray(reference["proportions"], np.float64), bin_counts(values, reference["edges"])


def category_bins(reference: dict[str, Any], values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Reference shares and the window's counts over the kept values and 'other' (unseen values land there)."""
    kept = reference["values"]
    positions = pc.index_in(values, value_set=pa.array(kept, pa.string())) if len(values) else pa.array([], pa.int32())
    codes = pc.fill_null(positions, len(kept)).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.asarray([*reference["proportions"], reference["other"]], np.float64), \
        np.bincount(codes, minlength=len(kept) + 1)


# ------------------------------------------------------------------------------------ the tests
def ks(reference: dict[str, Any], values: np.ndarray, settings: MonitorConfig) -> Score:
    """Kolmogorov-Smirnov against the reference CDF: exact at its distinct quantiles (atoms of discrete data
    included, left and right limits), linear between them; the p-value of the two-sample test."""
    from scipy.stats import kstwo

    support = np.asarray(reference["support"], np.float64)
    cdf, below = np.asarray(reference["cdf"], np.float64), np.asarray(reference["below"], np.float64)
    ordered = np.sort(values)
    points = np.union1d(support, ordered)
    index = np.searchsorted(support, points, "right") - 1  # the support point at or left of each point
    on = (index >= 0) & (support[np.clip(index, 0, None)] == points)
    inside = (index >= 0) & (index < len(support) - 1)
    left_x, right_x = support[np.clip(index, 0, len(support) - 1)], support[np.clip(index + 1, 0, len(support) - 1)]
    left_f, right_f = cdf[np.clip(index, 0, len(support) - 1)], below[np.clip(index + 1, 0, len(support) - 1)]
    width = np.where(right_x > left_x, right_x - left_x, 1.0)
    between = left_f + (right_f - left_f) * (points - left_x) / width
    reference_at = np.where(index < 0, 0.0, np.where(on, cdf[np.clip(index, 0, None)],
                                                       np.where(inside, between, 1.0)))
    reference_before = np.where(on, below[np.clip(index, 0, None)], reference_at)
    current_at = np.searchsorted(ordered, points, "right") / len(ordered)
    current_before = np.searchsorted(ordered, points, "left") / len(ordered)
    statistic = float(max(np.abs(current_at - reference_at).max(), np.abs(current_before - reference_before).max()))
    # The reference is a sample too: the two-sample test's effective size n m / (n + m), not the window's n.
    size = len(ordered) * reference["count"] / (len(ordered) + reference["count"])
    p_value = float(kstwo.sf(statistic, max(1, round(size))))
    return Score(p_value, settings.p_value, p_value < settings.p_value, statistic)


def wasserstein(reference: dict[str, Any], values: np.ndarray, settings: MonitorConfig) -> Score:
    """Wasserstein-1 distance between the quantile functions, in training standard deviations."""
    quantiles = np.asarray(reference["quantiles"], np.float64)
    levels = np.linspace(0.0, 1.0, len(quantiles))
    gap = np.abs(np.quantile(values, levels) - quantiles)
    distance = float(np.sum((gap[1:] + gap[:-1]) / 2) / (len(levels) - 1))
    scale = reference["std"] or max(abs(reference["mean"]), 1.0)
    score = distance / scale
    return Score(score, settings.wasserstein, score >= settings.wasserstein)


def _binned(view: Callable[[dict[str, Any], Any], tuple[np.ndarray, np.ndarray]],
            measure: Callable[[np.ndarray, np.ndarray], float], threshold: Callable[[MonitorConfig], float],
            ) -> Callable[[dict[str, Any], Any, MonitorConfig], Score]:
    def test(reference: dict[str, Any], values: Any, settings: MonitorConfig) -> Score:
        expected, counts = view(reference, values)
        score, limit = measure(expected, _shares(counts)), threshold(settings)
        return Score(score, limit, score >= limit)

    return test


def chi2(reference: dict[str, Any], values: pa.Array | pa.ChunkedArray, settings: MonitorConfig) -> Score:
    """Pearson's chi-squared test that the reference's and the window's counts come from one distribution (the
    reference is a sample too); a value training never had among its kept ones counts as 'other'."""
    expected, counts = category_bins(reference, values)
    return homogeneity(expected * reference["count"], counts, settings)


def homogeneity(reference: np.ndarray, current: np.ndarray, settings: MonitorConfig) -> Score:
    """Do two rows of counts over the same bins come from one distribution? Bins whose expected count is below 5 on
    either side are pooled (Cochran's rule: chi-squared is unreliable there); two bins left take Fisher's exact
    test, more take Pearson's chi-squared. Bins empty on both sides are left out."""
    from scipy.stats import chi2_contingency, fisher_exact

    table = np.stack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return Score(1.0, settings.p_value, False, 0.0)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    small = expected.min(axis=0) < 5
    if small.sum() > 1 and table.shape[1] > 2:
        table = np.concatenate([table[:, ~small], table[:, small].sum(axis=1, keepdims=True)], axis=1)
    if table.shape[1] == 2:
        p_value = float(fisher_exact(np.rint(table).astype(np.int64)).pvalue)
        return Score(p_value, settings.p_value, p_value < settings.p_value, None)
    test = chi2_contingency(table, correction=False)
    p_value = float(test.pvalue) if math.isfinite(test.pvalue) else 1.0
    return Score(p_value, settings.p_value, p_value < settings.p_value, float(test.statistic))


Test = Callable[[dict[str, Any], Any, MonitorConfig], Score]
# By the reference's distribution kind: the tests that apply, by name (MonitorConfig.numeric_test / category_test).
DRIFT_TESTS: dict[str, dict[str, Test]] = {
    "numbers": {"ks": ks, "wasserstein": wasserstein,
                "psi": _binned(number_bins, psi_value, lambda settings: settings.psi),
                "jensen_shannon": _binned(number_bins, js_value, lambda settings: settings.jensen_shannon)},
    "categories": {"chi2": chi2,
                   "psi": _binned(category_bins, psi_value, lambda settings: settings.psi),
                   "jensen_shannon": _binned(category_bins, js_value, lambda settings: settings.jensen_shannon)},
}
AUTO = {"numbers": ("ks", "wasserstein"), "categories": ("chi2", "jensen_shannon")}  # (small window, large window)


def choose_test(kind: str, rows: int, settings: MonitorConfig) -> str:
    """The configured test for a distribution kind, or by window size when it is `auto`."""
    wanted = settings.numeric_test if kind == "numbers" else settings.category_test
    if wanted != "auto":
        return wanted
    small, large = AUTO[kind]
    return small if rows <= settings.small_sample_rows else large


def rate_change(reference: tuple[int, int], hits: int, total: int, change: float, settings: MonitorConfig) -> Score:
    """A rate (missing, out of vocabulary) moved: by at least `change`, and significantly (chi-squared on the
    reference's and the window's counts: hits and misses)."""
    before, out_of = reference
    moved = abs(hits / total - before / out_of) if total and out_of else 0.0
    test = homogeneity(np.array([before, out_of - before]), np.array([hits, total - hits]), settings)
    return Score(moved, change, moved >= change and test.drift, test.score)


RATE_CHANGES: dict[str, Callable[[MonitorConfig], float]] = {
    "missing": lambda settings: settings.missing_change, "oov": lambda settings: settings.oov_change}


def _view(reference: dict[str, Any], values: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Shares per bin on both sides, for the page."""
    view = number_bins if reference["kind"] == "numbers" else category_bins
    expected, counts = view(reference, values)
    labels = reference.get("values", reference.get("edges"))
    return ({"kind": reference["kind"], "shares": expected.tolist(), "bins": labels},
            {"shares": _shares(counts).tolist(), "count": int(len(values))})


def compare(name: str, entry: dict[str, Any], measured: Measured, settings: MonitorConfig) -> list[Result]:
    """Every test of one feature's profile entry against a window's measurement: a distribution test per aspect
    (skipped where either side has no values) and a rate test per rate."""
    results = []
    for aspect, reference in entry["aspects"].items():
        values = measured.aspects.get(aspect)
        if values is None or not len(values) or not reference.get("count"):
            continue
        test = choose_test(reference["kind"], len(values), settings)
        score = DRIFT_TESTS[reference["kind"]][test](reference, values, settings)
        shown, seen = _view(reference, values)
        results.append(Result(name, aspect, test, score.score, score.threshold, score.drift, len(values),
                              score.statistic, shown, seen))
    for rate, (hits, total) in measured.rates.items():
        if rate not in entry.get("counts", {}) or not total:
            continue
        reference_rate = entry["rates"][rate]
        score = rate_change(tuple(entry["counts"][rate]), hits, total, RATE_CHANGES[rate](settings), settings)
        results.append(Result(name, rate, f"{rate}_rate", score.score, score.threshold, score.drift, total,
                              score.statistic, {"rate": reference_rate}, {"rate": hits / total}))
    return results


def shown(results: list[Result]) -> list[Result]:
    """The tests worth a line for people: rate tests only where the rate is not zero on both sides."""
    return [result for result in results
            if "rate" not in result.reference or result.reference["rate"] or result.current["rate"]]

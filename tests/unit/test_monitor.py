"""Reference profiles and drift tests on generated data: simulated drift is flagged on the right feature, samples of
the training distribution are not (the false-alarm rate, measured over repeated samples), windows parse."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from luodi.config import MonitorConfig
from luodi.errors import InputError
from luodi.monitor.drift import DRIFT_TESTS, Result, choose_test, compare
from luodi.monitor.log import parse_time
from luodi.monitor.profile import PROFILERS

SETTINGS = MonitorConfig()
KINDS = {"size": "numeric", "age": "numeric", "income": "numeric", "flag": "binary", "color": "category",
         "review": "text"}
WORDS = np.array(["good", "bad", "price", "service", "fast", "slow", "staff", "room", "food", "clean"])
OTHER_WORDS = np.array(["kernel", "compiler", "thread", "socket", "buffer"])


def table(rows: int, seed: int, *, shift: float = 0.0, new_color: float = 0.0, missing: float = 0.05,
          words: np.ndarray = WORDS) -> dict[str, pa.ChunkedArray]:
    """Columns like a training table; `shift` moves `size`, `new_color` is the share of a color never seen,
    `missing` the share of missing incomes, `words` the texts' vocabulary."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, rows)
    income[rng.random(rows) < missing] = np.nan
    colors = rng.choice(["red", "green", "blue", "violet"], rows, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    colors[rng.random(rows) < new_color] = "ultraviolet"
    lengths = rng.integers(3, 12, rows)
    reviews = [" ".join(rng.choice(words, length)) for length in lengths]
    columns = {"size": rng.normal(shift, 1, rows), "age": rng.integers(18, 80, rows).astype(np.float64),
               "income": income, "flag": rng.choice([True, False], rows, p=[0.3, 0.7]), "color": colors,
               "review": reviews}
    return {name: pa.chunked_array([pa.array(values, from_pandas=True)]) for name, values in columns.items()}


@pytest.fixture(scope="module")
def profile() -> dict[str, dict]:
    return {name: PROFILERS[KINDS[name]].profile(column, SETTINGS) for name, column in table(5000, 0).items()}


def run_tests(profile: dict[str, dict], columns: dict[str, pa.ChunkedArray],
           settings: MonitorConfig = SETTINGS) -> dict[str, list[Result]]:
    return {name: compare(name, profile[name], PROFILERS[KINDS[name]].measure(column, profile[name]), settings)
            for name, column in columns.items()}


def flagged(results: dict[str, list[Result]]) -> dict[str, list[str]]:
    return {name: [result.aspect for result in items if result.drift] for name, items in results.items()
            if any(result.drift for result in items)}


def test_the_profile_is_compact_json(profile: dict[str, dict]) -> None:
    text = json.dumps(profile, allow_nan=False)
    assert len(text) < 40_000  # kilobytes for six features of 5000 rows
    assert profile["income"]["rates"]["missing"] == pytest.approx(0.05, abs=0.01)
    assert profile["color"]["aspects"]["value"]["values"] == ["red", "green", "blue", "violet"]
    assert profile["flag"]["aspects"]["value"]["values"] == ["false", "true"]  # spelled as the log spells it
    assert profile["review"]["vocabulary"] == sorted(WORDS) and profile["review"]["rates"]["oov"] == 0.0
    size = profile["size"]["aspects"]["value"]
    assert len(size["quantiles"]) == 101 and size["quantiles"] == sorted(size["quantiles"])
    assert sum(size["proportions"]) == pytest.approx(1.0, abs=1e-5) and len(size["proportions"]) == 10


@pytest.mark.parametrize("rows", [60, 400, 3000])
def test_a_sample_of_the_training_distribution_is_not_drift(profile: dict[str, dict], rows: int) -> None:
    assert flagged(run_tests(profile, table(rows, seed=100 + rows))) == {}


def test_a_shifted_number_is_flagged_on_its_feature_only(profile: dict[str, dict]) -> None:
    results = run_tests(profile, table(300, seed=2, shift=0.6))
    assert flagged(results) == {"size": ["value"]}
    assert results["size"][0].test == "ks" and results["size"][0].score < SETTINGS.p_value
    large = run_tests(profile, table(5000, seed=2, shift=0.6))  # past small_sample_rows: a distance
    assert flagged(large) == {"size": ["value"]} and large["size"][0].test == "wasserstein"
    assert large["size"][0].score == pytest.approx(0.6, abs=0.08)  # in training standard deviations


def test_a_new_category_and_a_missing_rate_change_are_flagged(profile: dict[str, dict]) -> None:
    assert flagged(run_tests(profile, table(300, seed=3, new_color=0.1))) == {"color": ["value"]}
    assert flagged(run_tests(profile, table(300, seed=4, missing=0.3))) == {"income": ["missing"]}


def test_a_swapped_text_domain_is_flagged_by_its_vocabulary(profile: dict[str, dict]) -> None:
    results = run_tests(profile, table(200, seed=5, words=np.concatenate([WORDS[:3], OTHER_WORDS])))
    assert flagged(results) == {"review": ["oov"]}
    oov = next(result for result in results["review"] if result.aspect == "oov")
    assert oov.current["rate"] > 0.5 and oov.reference["rate"] == 0.0


def test_a_changed_class_mix_is_output_drift() -> None:
    """Outputs are profiled like features: a predicted label is a category."""
    rng = np.random.default_rng(0)
    reference = PROFILERS["category"].profile(pa.chunked_array([rng.choice(["no", "yes"], 2000, p=[0.7, 0.3])]),
                                              SETTINGS)
    for share, drift in ((0.3, False), (0.5, True)):
        labels = pa.chunked_array([rng.choice(["no", "yes"], 500, p=[1 - share, share])])
        results = compare("prediction", reference, PROFILERS["category"].measure(labels, reference), SETTINGS)
        assert results[0].drift is drift, (share, results[0])


def test_every_configured_test_runs_and_flags_the_shift(profile: dict[str, dict]) -> None:
    for numeric in DRIFT_TESTS["numbers"]:
        for category in DRIFT_TESTS["categories"]:
            settings = MonitorConfig(numeric_test=numeric, category_test=category)
            results = run_tests(profile, table(2000, seed=6, shift=1.0, new_color=0.3), settings)
            assert set(flagged(results)) == {"size", "color"}, (numeric, category)
            assert results["size"][0].test == numeric and results["color"][0].test == category


def test_ks_matches_scipy_on_the_raw_samples(profile: dict[str, dict]) -> None:
    """The profile keeps 101 quantiles, not the data: the two-sample KS from them agrees with scipy's on the data."""
    from scipy.stats import ks_2samp

    reference = table(5000, 0)["income"].to_numpy()
    for seed in range(3):
        current = table(300, seed=seed, shift=0.0)["income"]
        result = run_tests(profile, {"income": current})["income"][0]
        values = current.to_numpy()
        exact = ks_2samp(reference[~np.isnan(reference)], values[~np.isnan(values)])
        assert result.statistic == pytest.approx(exact.statistic, abs=0.003)
        assert result.score == pytest.approx(exact.pvalue, rel=0.1, abs=0.005)


def test_auto_picks_by_window_size() -> None:
    assert choose_test("numbers", 1000, SETTINGS) == "ks"
    assert choose_test("numbers", 1001, SETTINGS) == "wasserstein"
    assert choose_test("categories", 10, SETTINGS) == "chi2"
    assert choose_test("categories", 10_000, SETTINGS) == "jensen_shannon"


@pytest.mark.slow
def test_false_alarm_rate_on_held_out_samples(profile: dict[str, dict]) -> None:
    """Repeated samples of the training distribution: each test drifts in under 5% of them (docs/monitoring.md
    reports the measured rates)."""
    repeats = 200
    for rows in (100, 800, 3000):
        alarms: dict[str, int] = {}
        for seed in range(repeats):
            for name, results in run_tests(profile, table(rows, seed=10_000 + seed)).items():
                for result in results:
                    key = f"{name}:{result.aspect}:{result.test}"
                    alarms[key] = alarms.get(key, 0) + result.drift
        rates = {key: count / repeats for key, count in alarms.items()}
        assert max(rates.values()) < 0.05, (rows, rates)


def test_windows_parse_dates_times_and_durations() -> None:
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert parse_time("2h", "--since", now) == datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    assert parse_time("7d", "--since", now) == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert parse_time("2026-12-01", "--since") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_time("2026-12-01T10:00+02:00", "--since") == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert parse_time(None, "--since") is None
    with pytest.raises(InputError, match=r"--until 'soon'"):
        parse_time("soon", "--until")


def test_outputs_are_profiled_as_the_log_stores_them() -> None:
    """A label as a category (the class mix), a regression's number and each class score as numbers."""
    from luodi.monitor.profile import output_columns
    from luodi.tasks import Output, OutputSpec, Predictions

    label = OutputSpec("prediction", "prediction", "label", parts=("low", "high"), labels=("low", "high"))
    scores = OutputSpec("probabilities", "probability", "scores", parts=("low", "high"))
    value = OutputSpec("prediction", "prediction", "number")
    classified = output_columns(Predictions((Output(label, np.array([0, 1, 1])),
                                             Output(scores, np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])))))
    assert {name: kind for name, (kind, _) in classified.items()} == {
        "prediction": "category", "probabilities.low": "numeric", "probabilities.high": "numeric"}
    assert classified["prediction"][1].to_pylist() == ["low", "high", "high"]
    assert classified["probabilities.high"][1].to_pylist() == [0.2, 0.7, 0.6]
    regression = output_columns(Predictions((Output(value, np.array([1.5, 2.5])),)))
    assert regression["prediction"][0] == "numeric" and regression["prediction"][1].to_pylist() == [1.5, 2.5]

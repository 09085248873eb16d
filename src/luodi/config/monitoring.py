"""The `monitor` section: the reference profile kept in the package, the drift tests of `luodi monitor`, and
`monitor.retrain` (when a challenger trained on production rows replaces the champion)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from luodi.config.base import Strict

__all__ = ["MonitorConfig", "RetrainConfig"]


class RetrainConfig(Strict):
    """`luodi retrain` and `luodi monitor --retrain-if-drift` (docs/monitoring.md): a challenger trained on the
    training data plus labelled production rows, promoted only when it beats the champion on fresh production rows."""

    alias: str = Field("production", description="The champion's alias, moved to the challenger when it wins.")
    window: str = Field("30d", description="Labelled production rows logged within this long (30m, 12h, 7d) are used.")
    mix: float = Field(0.5, ge=0, lt=1, description="Share of the challenger's training rows drawn from production "
                       "(sampled with replacement when fewer; 0 trains on the training data alone).")
    holdout: float = Field(0.3, gt=0, lt=1, description="Share of the newest labelled production rows held out: the "
                           "fresh holdout both models are scored on; never trained on.")
    min_labelled_rows: int = Field(30, ge=2, description="Fewer labelled production rows: no retrain (nothing to learn "
                                   "from or judge by).")
    metric: str | None = Field(None, description="Holdout metric that decides (accuracy, loss, rmse, ...); default "
                               "the early-stopping metric. Its direction comes from the task.")
    margin: float = Field(0.01, ge=0, description="The challenger must beat the champion on `metric` by more than "
                          "this (absolute).")
    gates: list[str] = Field(["loss"], description="Other holdout metrics the challenger may not be worse on than "
                             "the champion by more than max_drop (the deciding metric is left out).")
    max_drop: float = Field(0.05, ge=0, description="How much worse (absolute) a gate metric of the challenger may be.")


class MonitorConfig(Strict):
    """The reference profile kept in the package and the drift tests `luodi monitor` runs against it
    (docs/monitoring.md). `auto` picks a test by the window's size: a p-value test up to `small_sample_rows` rows,
    a distance beyond (p-values flag negligible shifts on large windows)."""

    profile: bool = Field(True, description="Write the training data's reference profile (profile.json) into the "
                          "package; without it `luodi monitor` cannot run.")
    profile_rows: int = Field(100_000, ge=100, description="Most training rows (a seeded sample) the profile reads; "
                              "the model's outputs are profiled on at most this many validation rows.")
    bins: int = Field(10, ge=2, le=100, description="Quantile bins of each number for PSI and Jensen-Shannon.")
    top_categories: int = Field(20, ge=1, le=1000, description="Category values kept by frequency; the rest are "
                                "counted together as 'other' (a value never seen lands there too).")
    text_vocabulary: int = Field(500, ge=10, le=10_000, description="Most frequent training words a text feature's "
                                 "out-of-vocabulary rate is measured against.")
    numeric_test: Literal["auto", "ks", "wasserstein", "psi", "jensen_shannon"] = Field(
        "auto", description="Test of numbers (text lengths, image statistics, scores): auto is ks up to "
        "small_sample_rows rows, else wasserstein.")
    category_test: Literal["auto", "chi2", "jensen_shannon", "psi"] = Field(
        "auto", description="Test of categories, binary values and predicted labels: auto is chi2 up to "
        "small_sample_rows rows, else jensen_shannon.")
    small_sample_rows: int = Field(1000, ge=1, description="Windows up to this many rows use the p-value tests.")
    p_value: float = Field(0.01, gt=0, lt=1, description="ks, chi2 and rate changes: drift when the p-value is below "
                           "this (the false-alarm rate per feature on undrifted data).")
    psi: float = Field(0.2, gt=0, description="Population stability index at or above which a feature drifted.")
    wasserstein: float = Field(0.1, gt=0, description="Wasserstein distance, in training standard deviations, at or "
                               "above which a number drifted.")
    jensen_shannon: float = Field(0.1, gt=0, le=1, description="Jensen-Shannon distance (base 2, 0 to 1) at or "
                                  "above which a feature drifted.")
    missing_change: float = Field(0.05, gt=0, le=1, description="Change of a feature's missing rate (absolute) that "
                                  "counts as drift, when also significant at p_value.")
    oov_change: float = Field(0.1, gt=0, le=1, description="Change of a text feature's out-of-vocabulary word rate "
                              "(absolute) that counts as drift, when also significant at p_value.")
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)  # type: ignore[arg-type]

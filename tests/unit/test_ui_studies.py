"""The study page's importance cache: a repeat view reuses the importances, a trial that starts or finishes makes
the next view compute them again, and what it returns is always what `jobs.tune.importances` computes."""

from __future__ import annotations

from typing import Any

import optuna

from luodi.jobs.tune import importances
from luodi.ui.studies import ImportanceCache


def objective(trial: Any) -> float:
    x, y = trial.suggest_float("x", -1.0, 1.0), trial.suggest_float("y", -1.0, 1.0)
    return float(x**2 + 0.1 * y)


def test_importances_are_cached_until_a_trial_finishes() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="cached", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=6)
    cache = ImportanceCache()
    first = cache.importances(study, 0)
    assert first is not None and first == importances(study, 0)
    assert cache.importances(study, 0) == first and cache.computed == 1  # a repeat view computes nothing
    assert cache.importances(study, 1) == importances(study, 1) and cache.computed == 2  # another seed: another key

    running = study.ask()  # a trial starts: counted, not finished
    assert cache.importances(study, 0) == first and cache.computed == 3
    study.tell(running, objective(running))  # it finishes: the number of trials stays the same
    after = cache.importances(study, 0)
    assert cache.computed == 4 and after == importances(study, 0) and after != first
    assert cache.importances(study, 0) == after and cache.computed == 4


def test_the_cache_keeps_the_most_recently_viewed_studies() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cache = ImportanceCache(most=2)
    studies = [optuna.create_study(study_name=f"s{index}", sampler=optuna.samplers.RandomSampler(seed=index))
               for index in range(3)]
    for study in studies:
        study.optimize(objective, n_trials=3)
    for study in (studies[0], studies[1], studies[0], studies[2]):  # s1 was viewed least recently when s2 came
        cache.importances(study, 0)
    assert list(cache.entries) == ["s0", "s2"] and cache.computed == 3

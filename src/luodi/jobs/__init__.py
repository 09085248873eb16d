"""Jobs: the work behind the CLI commands that train, split into compute and record.

    fit.py     read and split the data, fit the features, train the model; returns weights, history, scores
    train.py   the training job: a recorded run around fit, then the report, the package and the registration
    tune.py    the search job: Optuna trials, each a `train(trial=...)` run, the best trial's package registered

A job composes the layers below it (data, features, models, train, evaluate, store); nothing below imports a
job. Search trials (tune.py: `train(trial=...)`), retraining and distributed runs call `fit` directly or
`train(register=False)`.
"""

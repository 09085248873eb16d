"""Monitoring: the reference profile a package keeps, drift tests against it, and `luodi monitor`.

    profile.py  the training data's and outputs' reference profile (profile.json in the package)
    drift.py    drift tests per feature (PSI, Kolmogorov-Smirnov, chi-squared, Jensen-Shannon, Wasserstein, rates)
    log.py      a time window of the server's prediction log, read for a model version
    report.py   monitor.html: reference vs current per feature, output drift, latency and throughput
    check.py    `luodi monitor`: profile + window + tests -> results, table, JSON and page

profile.py and drift.py sit above the server in the layers (a live window in the server can use them); the
others read the prediction log that serve/predlog.py writes, so they sit below it. This file imports nothing.
"""

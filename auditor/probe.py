"""The cross-validated linear probe: fitted once per audit and shared by tightness, the evaluation forecast and
weak slices (each fold's model predicts its held-out clips, so every clip gets an honest prediction)."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

PROBE_MAX_SAMPLES = 20_000


@dataclass(frozen=True)
class Probe:
    """Out-of-fold predictions for the clips the probe saw (classes with at least two clips; a seeded sample
    above PROBE_MAX_SAMPLES): `positions` index the context's clips, `probabilities` columns follow `labels`."""

    positions: np.ndarray
    truth: np.ndarray
    predicted: np.ndarray
    probabilities: np.ndarray
    labels: list[str]
    folds: int
    # Clips of those classes outside the sample (above PROBE_MAX_SAMPLES), predicted by the mean of the fold
    # models: every fold model is held out from them, so their predictions are as honest as the sample's.
    rest_positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rest_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    @property
    def correct(self) -> np.ndarray:
        return self.truth == self.predicted

    def every_clip(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """([n] which probabilities row holds clip i, -1 for none; the rows): the sample's out-of-fold rows, then
        the rest's held-out ones, so a check reads one prediction per clip whatever the dataset's size."""
        where = np.full(n, -1, dtype=np.int64)
        where[self.positions] = np.arange(len(self.positions))
        where[self.rest_positions] = len(self.positions) + np.arange(len(self.rest_positions))
        rest = self.rest_probabilities.reshape(len(self.rest_positions), len(self.labels))
        return where, np.vstack([self.probabilities.astype(np.float32), rest])


def fit_probe(vectors: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> Probe | None:
    """A logistic regression per stratified fold; None when fewer than two classes have two clips."""
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    counts = Counter(labels)
    usable = [label for label, n in counts.items() if n >= 2]
    if len(usable) < 2:
        return None
    idx = usable_idx = np.flatnonzero(np.isin(labels, usable))
    if len(idx) > PROBE_MAX_SAMPLES:
        idx = np.sort(np.random.default_rng(seed).choice(idx, PROBE_MAX_SAMPLES, replace=False))
    y = labels[idx].astype(str)
    n_splits = int(min(folds, min(Counter(y).values())))
    if n_splits < 2:
        return None
    names = sorted(set(y.tolist()))
    predicted = np.empty(len(y), dtype=object)
    probabilities = np.zeros((len(y), len(names)))
    model = LogisticRegression(C=10.0, max_iter=300)
    x = vectors[idx]
    rest = np.setdiff1d(usable_idx, idx)
    rest_probabilities = np.zeros((len(rest), len(names)), np.float32)
    for train, test in StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(x, y):
        fitted = clone(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted.fit(x[train], y[train])
        predicted[test] = fitted.predict(x[test])
        columns = [names.index(c) for c in fitted.classes_]
        probabilities[np.ix_(test, columns)] = fitted.predict_proba(x[test])
        for start in range(0, len(rest), 65_536):  # in blocks: the rest may be millions of clips
            block = rest[start : start + 65_536]
            rest_probabilities[np.ix_(np.arange(start, start + len(block)), columns)] += (
                fitted.predict_proba(vectors[block]) / n_splits
            )
    return Probe(idx, y.astype(object), predicted, probabilities, names, n_splits, rest, rest_probabilities)

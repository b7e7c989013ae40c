"""Clustered synthetic clip vectors with planted mislabels and cross-split copies (known answers)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from auditor.config import AuditConfig
from auditor.context import AuditContext
from taxonomy_core import schema as S


@dataclass
class Planted:
    context: AuditContext
    true_labels: np.ndarray
    mislabelled: set[int]
    copies: set[tuple[int, int]]  # (train original, test copy)


def synthetic_dataset(
    n: int, dim: int = 512, classes: int = 50, mislabel_rate: float = 0.01, copy_rate: float = 0.005, seed: int = 0
) -> Planted:
    """Classes as Gaussian clusters of unit vectors (cohesion ~0.6, like real clip embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    codes = rng.integers(0, classes, n)
    vectors = centres[codes] + 1.0 * rng.normal(size=(n, dim)).astype(np.float32)
    splits = np.where(rng.random(n) < 0.8, "train", "test").astype(object)
    copies = set()
    train = np.flatnonzero(splits == "train")
    test = np.flatnonzero(splits == "test")
    for original, target in zip(
        rng.choice(train, int(n * copy_rate), replace=False), rng.choice(test, int(n * copy_rate), replace=False)
    ):
        vectors[target] = vectors[original] + 0.05 * rng.normal(size=dim)  # a re-encoded copy
        codes[target] = codes[original]
        copies.add((int(original), int(target)))
    true = codes.copy()
    copied = {i for pair in copies for i in pair}
    candidates = np.array([i for i in range(n) if i not in copied])
    flipped = rng.choice(candidates, int(n * mislabel_rate), replace=False)
    codes[flipped] = (codes[flipped] + rng.integers(1, classes, len(flipped))) % classes
    labels = np.array([f"class_{c:03d}" for c in codes], dtype=object)
    clips = pd.DataFrame(
        {
            S.CLIP_ID: [f"c{i}" for i in range(n)],
            S.ROW: np.arange(n),
            S.VIDEO: [f"/data/v{i}.mp4" for i in range(n)],
            S.START: 0.0,
            S.END: 3.0,
            S.LABEL: labels,
            S.SPLIT: splits,
            S.DURATION: rng.uniform(5, 60, n).round(1),
            S.FPS: rng.choice([25.0, 30.0], n),
            S.WIDTH: 1280,
            S.HEIGHT: 720,
            S.CODEC: "h264",
            S.BRIGHTNESS: rng.uniform(60, 160, n),
            S.EXTRA: [{}] * n,
        }
    )
    return Planted(
        AuditContext(clips, vectors, config=AuditConfig()),
        np.array([f"class_{c:03d}" for c in true]),
        {int(i) for i in flipped},
        copies,
    )

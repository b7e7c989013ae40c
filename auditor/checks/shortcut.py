"""Shortcut risk: can the label be told from metadata alone (resolution, fps, duration, source, brightness)?"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.tree import DecisionTreeClassifier

from auditor.checks.base import Check, CheckResult, Requirement
from taxonomy_core import schema as S
from taxonomy_core.findings import Finding, clamp


class ShortcutRisk(Check):
    name = "shortcut"
    requires = frozenset({Requirement.TWO_CLASSES})

    @dataclass(frozen=True, kw_only=True)
    class Params:
        lift: float = 0.3  # metadata predicting the label this much above chance is a shortcut

    def run(self, ctx) -> CheckResult:
        cfg = self.params
        seed = ctx.config.seed
        result = self.result()
        features = metadata_features(ctx.clips)
        y = ctx.labels.astype(str)
        counts = pd.Series(y).value_counts()
        folds = int(min(5, counts.min()))
        if len(counts) < 2 or folds < 2:
            result.skipped = "needs two classes with at least two clips each"
            return result
        chance = float(counts.iloc[0] / len(y))
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        accuracy = {name: _accuracy(features[[name]], y, cv, seed) for name in features.columns}
        combined = _accuracy(features, y, cv, seed, depth=6)
        result.classes = {}
        informative = sorted((n for n, a in accuracy.items() if a >= chance + cfg.lift / 2), key=lambda n: -accuracy[n])
        if combined >= chance + cfg.lift:
            detail = ", ".join(f"{n} alone {accuracy[n]:.0%}" for n in informative) or "only in combination"
            result.findings.append(
                Finding(
                    "shortcut_risk",
                    "warning",
                    f"the label is predictable from metadata alone: {combined:.0%} accuracy vs "
                    f"{chance:.0%} by chance ({detail}); "
                    "a model can learn these hints instead of the action: balance sources and formats across classes",
                    labels=tuple(ctx.classes),
                    confidence=clamp((combined - chance) / max(1e-6, 1 - chance)),
                    action="balance sources, formats and lighting across classes, or drop the telltale footage",
                    suggestion={"features": informative},
                )
            )
        return result


def metadata_features(clips: pd.DataFrame) -> pd.DataFrame:
    source = clips[S.VIDEO].map(lambda v: str(PurePosixPath(v).parent))
    return pd.DataFrame(
        {
            "resolution": clips[S.WIDTH] * 10_000 + clips[S.HEIGHT],
            "fps": clips[S.FPS].round(2),
            "segment_length": (clips[S.END] - clips[S.START]).round(2),
            "video_duration": clips[S.DURATION].round(1),
            "codec": pd.factorize(clips[S.CODEC])[0],
            "source_folder": pd.factorize(source)[0],
            "brightness": clips[S.BRIGHTNESS].round(0),
        }
    ).fillna(-1)


def _accuracy(x: pd.DataFrame, y: np.ndarray, cv, seed: int, depth: int = 3) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(
            cross_val_score(DecisionTreeClassifier(max_depth=depth, random_state=seed), x.to_numpy(), y, cv=cv).mean()
        )

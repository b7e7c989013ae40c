"""Weak slices: metadata slices (night footage, one resolution, one source folder, a manifest column) on which the
shared cross-validated probe does clearly worse than on the rest of the data.

A slice is judged against what its own classes reach elsewhere (each clip's class accuracy outside the slice), so
a slice made of hard classes is not blamed for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from auditor.checks.base import Check, CheckResult, Requirement
from taxonomy_core import schema as S
from taxonomy_core.findings import Evidence, Finding, clamp

MIN_ELSEWHERE = 3  # clips of a class outside a slice needed to say what the class reaches elsewhere


class WeakSlices(Check):
    name = "weak_slices"
    requires = frozenset({Requirement.TWO_CLASSES})

    @dataclass(frozen=True, kw_only=True)
    class Params:
        columns: tuple[str, ...] = ()  # manifest columns to slice by as well (`auditor audit --slice COLUMN`)
        brightness_edges: tuple[float, ...] = (60.0, 100.0)  # mean luma 0-255: night < 60 <= dim < 100 <= day
        min_size: int = 10  # a slice (and the rest) needs this many probed clips to be judged
        min_gap: float = 0.15  # accuracy this far below what the slice's classes reach elsewhere ...
        min_z: float = 2.0  # ... and this many standard errors below it
        max_values: int = 50  # a column with more distinct values is an identifier, not a slice
        probe_folds: int = 5  # the shared probe's folds (tightness's, so the probe is fitted once)

    def run(self, ctx) -> CheckResult:
        p = self.params
        result = self.result()
        probe = ctx.probe(p.probe_folds)
        if probe is None:
            result.skipped = "needs two classes with at least two clips each"
            return result
        table = slice_table(ctx.clips.iloc[probe.positions], p)
        slices, skipped = [], {}
        weak: dict[bytes, list[tuple[str, str, np.ndarray, dict]]] = {}  # one finding per set of clips
        for column in table.columns:
            values = table[column]
            if values.nunique() < 2 or values.nunique() > p.max_values:
                skipped[column] = f"{values.nunique()} distinct value(s)"
                continue
            for value in sorted(values.unique(), key=str):
                mask = values.to_numpy() == value
                record = judge(probe, mask, p)
                slices.append({"column": column, "value": value, **record})
                if record["weak"]:
                    weak.setdefault(np.packbits(mask).tobytes(), []).append((column, value, mask, record))
        for same in weak.values():
            result.findings.append(weak_slice(ctx, probe, same, p))
        result.sections["slices"] = {"slices": slices, "skipped_columns": skipped, "columns": list(table.columns)}
        return result


def slice_table(clips: pd.DataFrame, p) -> pd.DataFrame:
    """One column per way of slicing, one row per clip: brightness bucket, resolution, source folder, asked columns."""
    names = ["night", "dim", "day"] if len(p.brightness_edges) == 2 else None
    buckets = pd.cut(clips[S.BRIGHTNESS], [-np.inf, *p.brightness_edges, np.inf], right=False, labels=names)
    table = pd.DataFrame(
        {
            "brightness": buckets.astype(str),
            "resolution": clips[S.WIDTH].astype(str) + "x" + clips[S.HEIGHT].astype(str),
            "source_folder": clips[S.VIDEO].map(lambda v: str(PurePosixPath(v).parent)),
        },
        index=clips.index,
    )
    for column in p.columns:
        table[column] = clips[S.EXTRA].map(lambda extra, c=column: _text((extra or {}).get(c)))
    return table


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def judge(probe, mask: np.ndarray, p) -> dict[str, Any]:
    """Accuracy in the slice against what its clips' classes reach outside it (smoothed, so never 0 or 1).

    Only clips whose class has at least MIN_ELSEWHERE clips outside the slice are compared: a slice that holds all
    of a class (one resolution per source) says nothing about the slice for that class.
    """
    codes = np.searchsorted(np.array(probe.labels, dtype=object), probe.truth)
    inside = _tally(codes, probe.correct, mask, len(probe.labels))
    outside = _tally(codes, probe.correct, ~mask, len(probe.labels))
    elsewhere = (outside[1] + 1) / (outside[0] + 2)
    known = outside[0] >= MIN_ELSEWHERE
    compared = mask & known[codes]
    n = int(compared.sum())
    expected = elsewhere[codes[compared]]
    gap = float(expected.mean() - probe.correct[compared].mean()) if n else 0.0
    z = gap / np.sqrt(max(float((expected * (1 - expected)).sum()) / n**2, 1e-9)) if n else 0.0
    judged = n >= p.min_size and int((~mask).sum()) >= p.min_size
    return {
        "size": int(mask.sum()),
        "accuracy": float(probe.correct[mask].mean()) if mask.any() else None,
        "compared": n,
        "expected": float(expected.mean()) if n else None,
        "gap": gap,
        "z": float(z),
        "classes_hurt": classes_hurt(probe.labels, inside, elsewhere, known, p.min_gap),
        "judged": judged,
        "weak": bool(judged and gap >= p.min_gap and z >= p.min_z),
    }


def _tally(codes: np.ndarray, correct: np.ndarray, where: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: clips and correctly recognised clips among `where`."""
    clips = np.bincount(codes[where], minlength=n).astype(float)
    return clips, np.bincount(codes[where], weights=correct[where].astype(float), minlength=n)


def classes_hurt(labels, inside, elsewhere: np.ndarray, known: np.ndarray, min_gap: float) -> list[dict[str, Any]]:
    """Classes whose clips in the slice are recognised clearly less often than their clips elsewhere."""
    out = []
    for k in np.flatnonzero(known & (inside[0] > 0)):
        here = float(inside[1][k] / inside[0][k])
        if elsewhere[k] - here >= min_gap:
            out.append({"label": labels[k], "clips": int(inside[0][k]), "accuracy": here, "elsewhere": elsewhere[k]})
    return sorted(out, key=lambda c: c["accuracy"] - c["elsewhere"])


def weak_slice(ctx, probe, same: list[tuple[str, str, np.ndarray, dict]], p) -> Finding:
    """One finding per weak set of clips, naming every slice that is exactly those clips (night = camera 'ir')."""
    column, value, mask, record = same[0]
    where = " (the same clips as " + ", ".join(f"{c} = {v!r}" for c, v, *_ in same[1:]) + ")" if len(same) > 1 else ""
    wrong = probe.positions[mask & ~probe.correct]
    labels = tuple(c["label"] for c in record["classes_hurt"]) or tuple(sorted(set(probe.truth[mask])))
    hurt = ", ".join(f"{c['label']!r} {c['accuracy']:.0%} vs {c['elsewhere']:.0%}" for c in record["classes_hurt"])
    return Finding(
        "weak_slice",
        "warning",
        f"the probe recognises {record['accuracy']:.0%} of the {record['size']} clips with {column} = {value!r}"
        f"{where}: {100 * record['gap']:.0f} points under what the same classes reach elsewhere "
        f"({record['expected']:.0%}, {record['z']:.1f} standard errors)" + (f"; it hurts {hurt}" if hurt else ""),
        labels=labels,
        evidence=tuple(Evidence(int(ctx.rows[i]), "misclassified_in_slice") for i in wrong[:20]),
        confidence=clamp(min(record["gap"] / (2 * p.min_gap), record["z"] / (2 * p.min_z))),
        action=f"add training clips of {', '.join(map(repr, labels[:5]))} with {column} = {value!r}: "
        "a model trained on this data lags there",
        suggestion={"slices": [{"column": c, "value": v} for c, v, *_ in same], "labels": list(labels)},
    )

"""Representativeness: does the training data cover the footage the model will meet (lighting, camera, format)?

Reference footage from the target environment (`auditor audit --reference`) is indexed like the dataset; each
reference clip's nearest training clip says how well it is covered. "Far" is calibrated on the training data
itself: a reference clip is unrepresented when it is farther from every training clip than `far_quantile` of
training clips are from the clips of other source videos (a new video of known conditions is not far). Far clips
nearer each other than to the training data form one group and one finding; metadata (brightness, resolution,
fps, aspect ratio) is compared side by side.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from auditor.checks.base import Check, CheckResult, Requirement
from auditor.context import clip_record
from auditor.sources import components
from taxonomy_core import schema as S
from taxonomy_core.findings import Evidence, Finding, clamp


class Representativeness(Check):
    name = "representativeness"
    requires = frozenset({Requirement.REFERENCE})

    @dataclass(frozen=True, kw_only=True)
    class Params:
        far_quantile: float = 0.05  # farther from training than this share of training clips are from other videos
        calibration_clips: int = 2000  # training clips (a seeded sample) that calibrate "far"
        group_link: float = 0.5  # far clips group when alike enough to close this share of the gap (far_groups)
        neighbours: int = 5  # nearest training clips kept per reference clip (evidence, its place on the map)
        night_brightness: float = 60.0  # mean luma (0-255) under which a clip counts as night footage
        metadata_share: float = 0.25  # a metadata difference this large (share of clips) is marked as differing

    def run(self, ctx) -> CheckResult:
        p = self.params
        ref = ctx.reference
        result = self.result()
        calibration = other_video_similarity(ctx, p.calibration_clips)
        threshold = float(np.quantile(calibration, p.far_quantile))
        idx, sim = nearest_training(ref.vectors, ctx.vectors, p.neighbours)
        nearest_class = np.argmax(ref.vectors @ ctx.centroids.T, axis=1)
        far = np.flatnonzero(sim[:, 0] < threshold)
        groups = far_groups(ref.vectors, far, sim[:, 0], p.group_link)
        group_of = {i: g for g, members in enumerate(groups) for i in members}
        scale = max(float(np.std(calibration)), 0.01)
        for g, members in enumerate(groups):
            result.findings.append(unrepresented(ctx, members, g, idx, sim, nearest_class, threshold, scale, p))
        result.sections["reference_clips"] = clip_records(ctx, idx, sim, nearest_class, group_of)
        result.sections["reference"] = {
            "dataset": ref.dataset,
            "source": ref.source,
            "clips": len(ref.vectors),
            "not_indexed": ref.not_indexed,
            "threshold": threshold,
            "calibration": {
                "clips": len(calibration),
                "median": float(np.median(calibration)),
                "quantile": p.far_quantile,
            },
            "similarity": _quantiles(sim[:, 0]) if len(sim) else {},
            "unrepresented": int(len(far)),
            "groups": [
                {
                    "group": g,
                    "size": len(members),
                    "nearest_class": _common(ctx, nearest_class[members]),
                    "similarity": float(sim[members, 0].mean()),
                }
                for g, members in enumerate(groups)
            ],
            "metadata": compare_metadata(ctx.clips, ref.clips, p),
        }
        return result


def nearest_training(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's k nearest training clips (positions, cosines), best first, in blocks of bounded memory."""
    k = min(k, len(vectors))
    idx = np.empty((len(queries), k), dtype=np.int64)
    sim = np.empty((len(queries), k), dtype=np.float32)
    step = _block(len(vectors))
    for start in range(0, len(queries), step):
        scores = queries[start : start + step] @ vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        idx[start : start + step] = np.take_along_axis(top, order, axis=1)
        sim[start : start + step] = np.take_along_axis(scores, idx[start : start + step], axis=1)
    return idx, sim


def _block(n: int) -> int:
    """Query rows per block so that a block of scores stays near 32M floats."""
    return int(max(16, min(1024, (1 << 25) // max(n, 1))))


def other_video_similarity(ctx, sample: int) -> np.ndarray:
    """For a seeded sample of training clips: the cosine to the nearest training clip of another source video."""
    n = len(ctx.vectors)
    chosen = np.arange(n) if n <= sample else np.sort(np.random.default_rng(ctx.config.seed).choice(n, sample, False))
    video = pd.factorize(ctx.clips[S.VIDEO])[0]
    out = []
    step = _block(n)
    for start in range(0, len(chosen), step):
        rows = chosen[start : start + step]
        scores = ctx.vectors[rows] @ ctx.vectors.T
        scores[video[rows][:, None] == video[None, :]] = -np.inf
        out.append(scores.max(axis=1))
    found = np.concatenate(out) if out else np.array([])
    return found[np.isfinite(found)] if np.isfinite(found).any() else np.array([1.0])


def far_groups(vectors: np.ndarray, far: np.ndarray, nearest: np.ndarray, link: float) -> list[list[int]]:
    """Far reference clips in groups of alike conditions (single linkage): two are linked when their cosine closes
    `link` of the gap between the nearer training clip of either and identity: nearer each other than to training."""
    bar = np.maximum(nearest[far][:, None], nearest[far][None, :])
    alike = np.triu(vectors[far] @ vectors[far].T >= bar + link * (1 - bar), k=1)
    groups = components(len(vectors), [(int(far[a]), int(far[b]), 0.0) for a, b in zip(*np.nonzero(alike))])
    grouped = {i for g in groups for i in g}
    groups += [[int(i)] for i in far if i not in grouped]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def _common(ctx, codes: np.ndarray) -> str:
    return ctx.classes[Counter(codes.tolist()).most_common(1)[0][0]]


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"q{q}": float(np.quantile(values, q / 100)) for q in (5, 25, 50, 75, 95)}


def unrepresented(ctx, members, g: int, idx, sim, nearest_class, threshold: float, scale: float, p) -> Finding:
    """One group of alike reference clips far from all training data: the fix is footage like them."""
    ref = ctx.reference.clips.iloc[members]
    label = _common(ctx, nearest_class[members])
    similarity = float(sim[members, 0].mean())
    closest = sorted({(int(idx[i, 0]), float(sim[i, 0])) for i in members}, key=lambda x: -x[1])[:8]
    bright = float(ref[S.BRIGHTNESS].median())
    train_bright = float(ctx.clips[S.BRIGHTNESS].median())
    conditions = f"median brightness {bright:.0f} (training {train_bright:.0f})"
    sizes = sorted(set(ref[S.WIDTH].astype(str) + "x" + ref[S.HEIGHT].astype(str)))
    unseen = [s for s in sizes if s not in set(ctx.clips[S.WIDTH].astype(str) + "x" + ctx.clips[S.HEIGHT].astype(str))]
    if unseen:
        conditions += f", resolution {', '.join(unseen[:3])} not in training"
    rows = [int(r) for r in ref[S.ROW]]
    return Finding(
        "unrepresented_reference",
        "warning",
        f"{len(members)} reference clip(s) (group {g}) are far from all training data: their nearest training "
        f"clip has cosine {similarity:.3f} on average, under {threshold:.3f} (what {1 - p.far_quantile:.0%} of "
        f"training clips reach in other videos); nearest class {label!r}; {conditions}",
        labels=(label,),
        videos=tuple(sorted(set(ref[S.VIDEO]))),
        evidence=tuple(Evidence(int(ctx.rows[j]), "nearest_training", round(s, 4)) for j, s in closest),
        confidence=clamp(0.5 + (threshold - similarity) / (2 * scale)),
        action=f"add training footage filmed like reference row(s) {', '.join(map(str, rows[:6]))}"
        + (" …" if len(rows) > 6 else "")
        + f" (nearest class {label!r}): the model will meet these conditions and the data has none",
        suggestion={
            "reference_rows": rows,
            "reference_clips": list(ref[S.CLIP_ID]),
            "nearest_class": label,
        },
    )


def clip_records(ctx, idx, sim, nearest_class, group_of: dict[int, int]) -> list[dict[str, Any]]:
    """One record per reference clip: its nearest training clips and class, whether it is represented, metadata."""
    out = []
    for i, clip in enumerate(ctx.reference.clips.itertuples(index=False)):
        out.append(
            {
                **clip_record(clip),
                "brightness": float(getattr(clip, S.BRIGHTNESS)),
                "width": int(getattr(clip, S.WIDTH)),
                "height": int(getattr(clip, S.HEIGHT)),
                "fps": float(getattr(clip, S.FPS)),
                "nearest_row": int(ctx.rows[idx[i, 0]]),
                "nearest_label": ctx.labels[idx[i, 0]],
                "nearest_class": ctx.classes[nearest_class[i]],
                "similarity": round(float(sim[i, 0]), 4),
                "neighbours": [[ctx.clip_ids[j], round(float(s), 4)] for j, s in zip(idx[i], sim[i])],
                "represented": i not in group_of,
                "group": group_of.get(i),
                "umap": None,
            }
        )
    return out


def compare_metadata(train: pd.DataFrame, ref: pd.DataFrame, p) -> list[dict[str, Any]]:
    """Training against reference, per attribute: the summary of each side and whether they differ."""
    out = []
    night = [float((t[S.BRIGHTNESS] < p.night_brightness).mean()) for t in (train, ref)]
    out.append(
        {
            "attribute": "brightness",
            "training": {"median": float(train[S.BRIGHTNESS].median()), "night_share": night[0]},
            "reference": {"median": float(ref[S.BRIGHTNESS].median()), "night_share": night[1]},
            "differs": abs(night[1] - night[0]) >= p.metadata_share,
            "note": f"night (mean luma < {p.night_brightness:.0f}): {night[0]:.0%} of training, {night[1]:.0%} of "
            "reference clips",
        }
    )
    for name, values in (("resolution", _resolution), ("fps", _fps), ("aspect_ratio", _aspect)):
        a, b = values(train), values(ref)
        unseen = float((~b.isin(set(a))).mean()) if len(b) else 0.0
        out.append(
            {
                "attribute": name,
                "training": _shares(a),
                "reference": _shares(b),
                "differs": unseen >= p.metadata_share,
                "note": f"{unseen:.0%} of reference clips have a {name.replace('_', ' ')} no training clip has",
            }
        )
    return out


def _resolution(t: pd.DataFrame) -> pd.Series:
    return t[S.WIDTH].astype(str) + "x" + t[S.HEIGHT].astype(str)


def _fps(t: pd.DataFrame) -> pd.Series:
    return t[S.FPS].round(2).astype(str)


def _aspect(t: pd.DataFrame) -> pd.Series:
    return (t[S.WIDTH] / t[S.HEIGHT].where(t[S.HEIGHT] > 0)).round(2).astype(str)


def _shares(values: pd.Series, top: int = 5) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.value_counts(normalize=True).head(top).items()}

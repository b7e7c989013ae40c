"""The check contract (after cleanlab's issue managers): a name, what it requires, typed params, a typed result.

A check is one class in one module: `name`, `requires` (one generic skip when the context lacks it), a frozen
keyword-only `Params` dataclass of its hyperparameters (the TOML table `[checks.<name>]` maps onto it), and
`run(ctx) -> CheckResult` keyed by clip id. Register it in `auditor/checks/__init__.py`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from taxonomy_core.edits import Edit
from taxonomy_core.findings import Finding


class Requirement(str, Enum):
    """What a check needs from the audit context; a check whose needs are unmet is skipped with the reason."""

    COMPANIONS = "timeline and crop vectors in the store"
    TEXT_SPACE = "a model with a text tower"
    SPLITS = "at least two splits"
    TWO_CLASSES = "at least two classes"
    REFERENCE = "reference footage (auditor audit --reference)"


@dataclass(frozen=True, kw_only=True)
class NoParams:
    """For a check without hyperparameters."""


@dataclass
class CheckResult:
    """What a check adds: findings, the edits that fix them, per-class metrics, per-clip fields keyed by clip id,
    and `sections`: top-level report sections about the dataset as a whole (e.g. `evaluation`)."""

    name: str
    findings: list[Finding] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    clips: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # a dict while it runs, then ClipFields
    sections: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None
    seconds: float = 0.0


class ClipFields(Mapping):
    """A check's per-clip fields packed as columns once it has run: clip ids and one Arrow array a field.

    A check records dicts while it runs; kept as dicts, a 10^6-clip audit held ~10^7 small Python objects for the
    rest of the run (about 1.6 GB, and they pin the heap's arenas, so freed neighbours cannot go back to the system).
    Packed, a clip costs the bytes of its values. Read as a mapping it gives back each clip's dict as recorded (a NaN
    as None, as report.json writes it); a field Arrow cannot hold as one type (mixed kinds) stays a Python list.
    """

    def __init__(self, clip_ids: list[str], columns: dict[str, pa.Array | list], absent: dict | None = None):
        self.clip_ids, self.columns = clip_ids, columns
        self.absent: dict[str, np.ndarray] = absent or {}  # field -> clips that did not record it (none: all did)
        self._slot: dict[str, int] | None = None

    @classmethod
    def pack(cls, clips: Mapping[str, dict[str, Any]]) -> ClipFields:
        if isinstance(clips, ClipFields):
            return clips
        records = list(clips.values())
        keys = dict.fromkeys(key for record in records for key in record)
        columns: dict[str, pa.Array | list] = {}
        absent: dict[str, np.ndarray] = {}
        for key in keys:
            values = [record.get(key) for record in records]
            lacking = np.fromiter((key not in record for record in records), bool, len(records))
            if lacking.any():
                absent[key] = lacking
            try:
                columns[key] = pa.array(values, from_pandas=True)  # NaN as null: None, as report.json writes it
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                columns[key] = values
        return cls(list(clips), columns, absent)

    def __getitem__(self, clip_id: str) -> dict[str, Any]:
        if self._slot is None:
            self._slot = {c: i for i, c in enumerate(self.clip_ids)}
        i = self._slot[clip_id]
        out = {}
        for key, values in self.columns.items():
            if key not in self.absent or not self.absent[key][i]:
                out[key] = values[i].as_py() if isinstance(values, pa.Array) else values[i]
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(self.clip_ids)

    def __len__(self) -> int:
        return len(self.clip_ids)


class Check:
    """Base class: subclasses set `name`, maybe `requires` and `Params`, and implement `run`."""

    name: ClassVar[str]
    requires: ClassVar[frozenset[Requirement]] = frozenset()
    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any = None):
        self.params = params if params is not None else self.Params()

    def run(self, ctx) -> CheckResult:
        raise NotImplementedError

    def result(self) -> CheckResult:
        return CheckResult(self.name)


def unmet(ctx, requires: frozenset[Requirement]) -> str | None:
    """The first requirement the context does not meet, in words; None when all are met."""
    available = {
        Requirement.COMPANIONS: ctx.has_companions,
        Requirement.TEXT_SPACE: ctx.text_encoder is not None,
        Requirement.SPLITS: ctx.clips["split"].dropna().nunique() >= 2,
        Requirement.TWO_CLASSES: len(ctx.classes) >= 2,
        Requirement.REFERENCE: ctx.reference is not None,
    }
    missing = [r.value for r in sorted(requires, key=lambda r: r.name) if not available[r]]
    return f"needs {' and '.join(missing)}" if missing else None

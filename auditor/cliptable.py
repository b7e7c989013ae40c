"""The audit's clips as one columnar table: identity, map position, what each check recorded of each clip, and the
kinds of findings accusing it. Written as Parquet beside report.json, named after the run, so the app reads the
columns a page shows (a 300,000-clip audit: ~0.3 s) instead of parsing every clip's record out of the report.

Columns are made one at a time from the context's arrays and the checks' per-clip results, never as a list of
per-clip records: the report stage of a big audit stays lean. Older reports (schema 3) carried the same records as
a JSON list; `ClipTable.from_records` reads those.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from auditor.checks.base import ClipFields
from taxonomy_core import schema as S
from taxonomy_core.atomic import atomic_target

RUN_KEY = b"taxonomy_auditor.run_id"
IDENTITY = ["row", "clip_id", "label", "split", "video", "start", "end"]
# The types a page computes with; any other column is what a check recorded, read as it was written.
TYPES = {
    "row": pa.int64(), "clip_id": pa.string(), "label": pa.string(), "split": pa.string(), "video": pa.string(),
    "start": pa.float64(), "end": pa.float64(), "cluster": pa.int64(), "findings": pa.list_(pa.string()),
}  # fmt: skip


def _number(kind: pa.DataType) -> bool:
    return pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)


def _numbers(kind: pa.DataType) -> bool:
    listed = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    return pa.types.is_null(kind) or (listed and _number(kind.value_type))


# Columns that, where present, must hold these: the pages compute with them.
OPTIONAL = {
    "umap": _numbers, "best_box": _numbers, "core": _numbers, "crop_gain": _number, "own_similarity": _number,
    "knn_agreement": _number, "timeline": lambda kind: pa.types.is_struct(kind) or pa.types.is_null(kind),
}  # fmt: skip
RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
ROW_GROUP = 1 << 16  # a few clips' records read from their row groups only (a group of every column: 26 ms at
# 65,536 clips; the whole table's 18 columns: 1-2 s at 10^6), a column read whole still fast (+25 % against one group)


class ClipTableError(ValueError):
    """The clip table is missing, from another run, or lacks a column a page needs; the message says what to do."""


def table_name(run_id: str) -> str:
    """The side file of one run: a run killed before its report.json leaves the last complete run's file in place."""
    if not RUN_ID.match(str(run_id)):
        raise ClipTableError(f"run id {run_id!r} cannot name a file (letters, digits, '_', '.', '-'; at most 80)")
    return f"clips.{run_id}.parquet"


# --- writing (the audit) ---------------------------------------------------------------------------------------


def build_table(ctx, results, kinds_by_row: Mapping[int, list[str]]) -> pa.Table:
    """One row per clip of the context, in its order; a check's per-clip fields override an earlier check's."""
    clips = ctx.clips
    columns: dict[str, pa.Array] = {
        "row": pa.array(clips[S.ROW].to_numpy(np.int64)),
        "clip_id": pa.array(clips[S.CLIP_ID].to_numpy(object), pa.string()),
        "label": pa.array(clips[S.LABEL].to_numpy(object), pa.string()),
        "split": pa.array(clips[S.SPLIT].to_numpy(object), pa.string(), from_pandas=True),
        "video": pa.array(clips[S.VIDEO].to_numpy(object), pa.string()),
        "start": pa.array(clips[S.START].to_numpy(np.float64)),
        "end": pa.array(clips[S.END].to_numpy(np.float64)),
    }
    recorded = _recorded(ctx.position, results, len(clips))
    umap = recorded.pop("umap", None)
    cluster = recorded.pop("cluster", None)
    columns["umap"] = _array(umap if umap is not None else pa.nulls(len(clips)))
    columns["cluster"] = (
        pc.cast(pc.fill_null(cluster, -1), pa.int64())
        if cluster is not None
        else pa.array(np.full(len(clips), -1, np.int64))
    )
    columns |= {key: _array(values) for key, values in recorded.items() if key not in columns}
    rows = ctx.rows
    columns["findings"] = pa.array([sorted(set(kinds_by_row.get(int(r), ()))) for r in rows], pa.list_(pa.string()))
    return pa.table(columns)


def _recorded(position: Mapping[str, int], results, n: int) -> dict[str, pa.Array]:
    """Each per-clip field a check recorded, as one column in the context's order (null where a clip has none).

    Column by column from each result's packed fields (ClipFields): a take per field, no per-clip dicts.
    """
    out: dict[str, pa.Array] = {}
    for result in results:
        fields = ClipFields.pack(result.clips)
        if not len(fields):
            continue
        slots = np.fromiter((position.get(c, -1) for c in fields.clip_ids), np.int64, len(fields))
        mine = slots >= 0  # a reference clip is not one of the audited clips
        where = np.full(n, -1, np.int64)
        where[slots[mine]] = np.flatnonzero(mine)
        for key, values in fields.columns.items():
            values = values if isinstance(values, pa.Array) else _as_text(values)
            taken = values.take(pa.array(where, mask=where < 0))
            if key in out:  # a later check's value wins, for the clips that recorded this field
                recorded = mine & ~fields.absent[key] if key in fields.absent else mine
                got = np.zeros(n, bool)
                got[slots[recorded]] = True
                taken = pc.if_else(pa.array(got), taken, out[key])
            out[key] = taken
    return out


def _as_text(values: list) -> pa.Array:
    """A field whose values share no one type (ClipFields kept it as a list) as JSON text, null where None."""
    return pa.array([None if v is None else json.dumps(v, default=str) for v in values], pa.string())


def _array(values: list | pa.Array) -> pa.Array:
    """A column of whatever a check recorded (numbers, lists, small dicts); NaN becomes null, as in report.json."""
    array = values if isinstance(values, pa.Array) else pa.array(values, from_pandas=True)
    if pa.types.is_floating(array.type):
        array = pc.if_else(pc.is_finite(array), array, pa.scalar(None, array.type))
    return array


def write_table(table: pa.Table, folder: Path, run_id: str) -> Path:
    """Written whole (temporary file, then rename), the run id in its metadata; zstd, in row groups."""
    path = Path(folder) / table_name(run_id)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), RUN_KEY: str(run_id).encode()})
    with atomic_target(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP)
    return path


# --- reading (the app, the HTML report) ------------------------------------------------------------------------


class ClipTable:
    """The audit's clips, column by column; a clip's record (as report.json schema 3 held it) made on request.

    Read from a file, a column is read the first time a page asks for it (a page wants a few of 20: at 7 x 10^5
    clips 0.09 s instead of 0.8 s for all), then kept; `table` and `records` read whatever is still unread."""

    def __init__(self, table: pa.Table | None, source: str = "the clip table", file: pq.ParquetFile | None = None):
        self.source, self._file, self._lock = source, file, threading.Lock()
        self.schema = file.schema_arrow if file is not None else table.schema
        self._rows = file.metadata.num_rows if file is not None else table.num_rows
        self._loaded: dict[str, pa.ChunkedArray] = {} if table is None else dict(zip(table.column_names, table.columns))
        self._groups: dict[int, pa.Table] = {}  # row groups read for a few records, until the whole table is
        missing = [c for c in IDENTITY + ["findings"] if c not in self.schema.names]
        if missing:
            raise ClipTableError(f"{source} lacks the column(s) {', '.join(missing)}: re-run `auditor audit`")
        for name, kind in TYPES.items():  # a table changed by hand: cast now, so a bad one is refused on opening
            if name in self.schema.names and not self.schema.field(name).type.equals(kind):
                self._loaded[name] = self._cast(name, kind, self._column(name))

    def _cast(self, name: str, kind: pa.DataType, column: pa.ChunkedArray) -> pa.ChunkedArray:
        try:
            return column.cast(kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise ClipTableError(
                f"{self.source}: column {name} holds {column.type}, not {kind}: re-run `auditor audit`"
            ) from e

    def _column(self, name: str) -> pa.ChunkedArray:
        """A column as one chunk, read from the file the first time (one reader at a time: pages share a table)."""
        with self._lock:
            if name not in self._loaded:
                try:
                    self._loaded[name] = self._file.read(columns=[name]).combine_chunks().column(0)
                except (OSError, pa.ArrowException) as e:
                    raise ClipTableError(f"{self.source} cannot be read ({e}): re-run `auditor audit`") from e
            return self._loaded[name]

    @property
    def table(self) -> pa.Table:
        """Every column (read now where still unread), with the file's metadata."""
        columns = [self._column(name) for name in self.schema.names]
        return pa.table(dict(zip(self.schema.names, columns))).replace_schema_metadata(self.schema.metadata)

    def check_types(self) -> None:
        """Refuse a column a page would compute with that holds something else (a table changed by hand)."""
        kinds = {name: self._loaded[name].type if name in self._loaded else self.schema.field(name).type
                 for name in self.schema.names}  # fmt: skip
        bad = [name for name, ok in OPTIONAL.items() if name in kinds and not ok(kinds[name])]
        if bad:
            raise ClipTableError(f"{self.source}: {', '.join(bad)} hold the wrong type: re-run `auditor audit`")

    @classmethod
    def read(cls, path: Path, run_id: str) -> ClipTable:
        """The table a run wrote (its columns read when asked for); another run's, or a damaged file, is refused
        with what to do."""
        try:
            file = pq.ParquetFile(path, memory_map=True)
        except (OSError, pa.ArrowException) as e:
            raise ClipTableError(f"{path} cannot be read ({e}): re-run `auditor audit`") from e
        written = (file.schema_arrow.metadata or {}).get(RUN_KEY, b"").decode(errors="replace")
        if written != str(run_id):
            raise ClipTableError(
                f"{path} comes from run {written or '(none)'}, not from run {run_id} that report.json names: "
                "the folder's files were mixed; re-run `auditor audit` into it"
            )
        return cls(None, str(path), file)

    @classmethod
    def from_records(cls, records: Sequence[dict], source: str = "report.json's clips") -> ClipTable:
        """The per-clip records of a schema-3 report.json (or of a test)."""
        if not records:
            return cls(pa.table({c: pa.array([], TYPES.get(c, pa.string())) for c in IDENTITY + ["findings"]}), source)
        keys = list(dict.fromkeys(k for r in records for k in r))  # from_pylist alone keeps the first record's
        try:
            return cls(pa.table({k: pa.array([r.get(k) for r in records], from_pandas=True) for k in keys}), source)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ClipTableError(f"{source} cannot be read as a table ({e}): re-run `auditor audit`") from e

    def __len__(self) -> int:
        return self._rows

    def empty(self, name: str) -> np.ndarray:
        """Where a list column (findings) is empty or missing, as a boolean array."""
        lengths = pc.list_value_length(self._column(name)).to_numpy(zero_copy_only=False)
        return np.nan_to_num(lengths.astype(float)) == 0

    @property
    def columns(self) -> list[str]:
        return self.schema.names

    def column(self, name: str) -> np.ndarray:
        """One column as numpy (objects for strings and lists; NaN for a missing number)."""
        if name not in self.schema.names:
            return np.full(len(self), None, dtype=object)
        return self._numpy(name)

    def _numpy(self, name: str) -> np.ndarray:
        column = self._column(name)
        if pa.types.is_integer(column.type) and column.null_count == 0:
            return column.to_numpy()
        if pa.types.is_floating(column.type):
            return column.to_numpy().astype(np.float64)
        if pa.types.is_string(column.type):
            return column.to_numpy(zero_copy_only=False)  # str objects, None where null
        # one object a clip (np.asarray would make lists of one length, e.g. every clip's empty findings, 2-D)
        return np.fromiter(column.to_pylist(), dtype=object, count=len(column))

    def arrow(self, name: str) -> pa.ChunkedArray:
        """One column as Arrow (for a vectorised pyarrow.compute pass over every clip)."""
        return self._column(name)

    def frame(self, names: Sequence[str]) -> pd.DataFrame:
        return pd.DataFrame({name: self.column(name) for name in names})

    def umap(self) -> tuple[np.ndarray, np.ndarray]:
        """Each clip's map position (x, y: NaN where it has none)."""
        if "umap" not in self.schema.names or self._column("umap").null_count == len(self):
            nan = np.full(len(self), np.nan)
            return nan, nan.copy()
        column = self._column("umap").combine_chunks()
        placed = column.is_valid().to_numpy(zero_copy_only=False)
        lists = column.fill_null([math.nan, math.nan]) if not placed.all() else column
        flat = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, 2)
        return flat[:, 0], flat[:, 1]

    @cached_property
    def by_row(self) -> dict[int, int]:
        """Position of each manifest row."""
        return {int(r): i for i, r in enumerate(self.column("row"))}

    def positions_of(self, clip_ids: Sequence[str]) -> dict[str, int]:
        """Where some clips are: from `by_id` once made, else one vectorised pass over the id column (a dict of 10^6
        ids takes ~0.3 s to make; a page showing a few thumbnails need not make it)."""
        if "by_id" in self.__dict__ or not clip_ids:
            return {c: self.by_id[c] for c in clip_ids if c in self.by_id}
        wanted = pa.array(list(dict.fromkeys(clip_ids)), pa.string())
        found = pc.index_in(self._column("clip_id"), value_set=wanted)
        rows = np.flatnonzero(found.is_valid().to_numpy(zero_copy_only=False))
        which = found.take(pa.array(rows)).to_numpy(zero_copy_only=False) if len(rows) else []
        return {wanted[int(w)].as_py(): int(r) for w, r in zip(which, rows)}

    @cached_property
    def by_id(self) -> dict[str, int]:
        """Position of each clip id."""
        return {c: i for i, c in enumerate(self.column("clip_id"))}

    def records(self, positions: Sequence[int] | None = None) -> list[dict]:
        """The clips' records at these positions (every clip's when None: slow at 10^5 clips and more). Until every
        column is read, a few clips' come from the row groups holding them, not from every column read whole."""
        if positions is None:
            part = self.table
        else:
            part = self._from_row_groups(np.asarray(positions, np.int64))
            part = self.table.take(pa.array(positions, pa.int64())) if part is None else part
        return [_record(r) for r in part.to_pylist()]

    def _from_row_groups(self, positions: np.ndarray) -> pa.Table | None:
        """These rows from the row groups holding them, each group read once and kept (a page looking clips up one
        at a time reads each group once); None where the whole table is better read (and kept): one group, every
        column read already, or clips in more than a quarter of the groups (a class's)."""
        if self._file is None or self._file.num_row_groups == 1 or len(self._loaded) == len(self.schema.names):
            return None
        starts = self._group_starts
        groups = np.searchsorted(starts, positions, side="right") - 1
        wanted = np.unique(groups).tolist()
        with self._lock:
            if 4 * len(wanted) > self._file.num_row_groups:
                self._groups.clear()  # the whole table replaces them
                return None
            try:
                self._groups.update({g: self._file.read_row_group(g) for g in wanted if g not in self._groups})
            except (OSError, pa.ArrowException) as e:
                raise ClipTableError(f"{self.source} cannot be read ({e}): re-run `auditor audit`") from e
            table = pa.concat_tables([self._groups[g] for g in wanted])
        sizes = np.diff(starts)[wanted]
        offset = np.zeros(len(starts), np.int64)
        offset[wanted] = np.cumsum(sizes) - sizes  # each wanted group's start in `table`
        return table.take(pa.array(positions - starts[groups] + offset[groups], pa.int64()))

    @cached_property
    def _group_starts(self) -> np.ndarray:
        """The first position of each row group, then the number of rows."""
        sizes = [self._file.metadata.row_group(i).num_rows for i in range(self._file.num_row_groups)]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def record(self, position: int) -> dict:
        return self.records([position])[0]

    def __iter__(self) -> Iterator[dict]:
        for batch in self.table.to_batches(4096):
            yield from (_record(r) for r in batch.to_pylist())


def folder_clips(folder: Path) -> ClipTable:
    """The clips of the audit in `folder`: the table of the run its report.json names (or, schema 3, inside it)."""
    import json

    report = json.loads((Path(folder) / "report.json").read_text(encoding="utf-8"))
    if report.get("schema_version") == 3:
        return ClipTable.from_records(report.get("clips") or [])
    return ClipTable.read(Path(folder) / table_name(report["run_id"]), report["run_id"])


def _record(record: dict) -> dict:
    """As report.json held it: a struct's missing fields dropped, so `.get` reads as before."""
    for key, value in record.items():
        if isinstance(value, dict):
            record[key] = {k: v for k, v in value.items() if v is not None}
    return record

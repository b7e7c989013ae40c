"""What the app may read, write and connect to (docs/security.md): the operator's roots, checked in one place.

The app serves whoever reaches its port. It reads manifests and videos only under the data roots, writes audits
only under the output root (never inside the code), and uses the one store the operator configured. A refusal
reads the same whether the path exists or not, so it never tells what a folder outside the roots holds.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from auditor.workspace import state_dir, written_audits

DATA_ROOTS_ENV = "AUDITOR_DATA_ROOTS"  # os.pathsep-separated folders whose manifests and videos the app reads
OUTPUT_ROOT_ENV = "AUDITOR_OUTPUT_ROOT"  # the folder under which the app writes audits
CODE = Path(__file__).resolve().parents[1]  # the project's own folders: never written by the app
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet", ".txt", ".tsv")


class AccessRefused(PermissionError):
    """A path the app will not read or write; the message names the rule, never what lies behind the path."""


def _paths(configured: Sequence[str | Path] | None, env: str) -> list[Path]:
    values = [str(p) for p in configured or ()] or [p for p in os.environ.get(env, "").split(os.pathsep)]
    return [Path(p).expanduser().resolve() for p in values if str(p).strip()]


def data_roots(configured: Sequence[str | Path] | None = None) -> list[Path]:
    """The flag's folders, else AUDITOR_DATA_ROOTS, else the folders of the manifests `auditor audit` audited."""
    roots = _paths(configured, DATA_ROOTS_ENV)
    if roots:
        return roots
    manifests = [Path(r["manifest"]) for r in written_audits(existing_only=False) if isinstance(r.get("manifest"), str)]
    return sorted({m if m.is_dir() else m.parent for m in manifests if m.is_absolute()})


def output_root(configured: str | Path | None = None) -> Path:
    """The flag's folder, else AUDITOR_OUTPUT_ROOT, else `audits/` in the state folder; never inside the code."""
    root = (_paths([configured] if configured else None, OUTPUT_ROOT_ENV) or [state_dir().resolve() / "audits"])[0]
    if _inside(root, [CODE]):
        raise AccessRefused(
            f"the output root {root} is inside the app's own code ({CODE}): set --output-root / {OUTPUT_ROOT_ENV} "
            "to a folder outside it"
        )
    return root


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def readable_input(path: str | Path, roots: Sequence[Path]) -> Path:
    """A manifest (a file or a class-folder tree) or video the app may read: under a data root, links resolved,
    a regular file with a manifest suffix or a folder. The refusal is the same for a path that does not exist."""
    given = str(path).strip()
    if not given or "\0" in given:
        raise AccessRefused("give the path of a manifest file or a folder of class folders")
    resolved = Path(given).expanduser().resolve()
    if not roots:
        raise AccessRefused(
            "this app reads no data folder yet: the operator names them with --data-root / "
            f"{DATA_ROOTS_ENV} (or runs `auditor audit` once on the command line)"
        )
    if not _inside(resolved, roots):
        raise AccessRefused(
            f"{given} is outside the data folders this app reads ({', '.join(map(str, roots))}); "
            f"the operator may add its folder with --data-root / {DATA_ROOTS_ENV}"
        )
    try:
        mode = resolved.stat().st_mode
    except OSError:
        raise AccessRefused(f"{given} does not exist or cannot be read") from None
    if stat.S_ISDIR(mode):
        return resolved
    if not stat.S_ISREG(mode):
        raise AccessRefused(f"{given} is not a regular file (a pipe, device or socket is never read)")
    if resolved.suffix.lower() not in MANIFEST_SUFFIXES:
        raise AccessRefused(f"{given} is not a manifest: give a {', '.join(MANIFEST_SUFFIXES)} file or a folder")
    return resolved


def writable_folder(name: str | Path, root: Path) -> Path:
    """An output folder: `name` under the output root (relative names are taken there), never inside the code."""
    given = str(name).strip()
    if not given or "\0" in given:
        raise AccessRefused("give an output folder name")
    path = Path(given).expanduser()
    resolved = (path if path.is_absolute() else root / path).resolve()
    if not _inside(resolved, [root]) or _inside(resolved, [CODE]):
        raise AccessRefused(
            f"{given} is outside the output root {root}: give a folder name under it "
            f"(the operator sets the root with --output-root / {OUTPUT_ROOT_ENV})"
        )
    return resolved

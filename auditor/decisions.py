"""The curator's decisions about an audit's findings, saved beside it in decisions.json as they are made.

A decision is about a finding (one problem); accepting it accepts the edits it proposed, and the fixed
manifest applies only those. Each save rewrites the file whole (temporary file, then rename), so a
review stopped at any moment resumes from the last decision. Records are read tolerantly: unknown keys
are kept out of the way, and the first version's flat `{edit key: state}` map is still understood.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from taxonomy_core.atomic import write_atomic
from taxonomy_core.edits import Edit

DECISIONS_FILE = "decisions.json"
VERSION = 2
STATES = ("accepted", "rejected")


class DecisionsError(ValueError):
    """decisions.json does not hold decisions; the message says what is wrong and how to start afresh."""


def finding_key(finding: dict[str, Any]) -> str:
    """A finding's name across reruns of the same audit: its kind and accused rows (or the classes it names)."""
    rows = ",".join(str(r) for r in finding.get("rows") or [])
    return f"{finding['kind']}:{rows}" if rows else f"{finding['kind']}:@{','.join(finding.get('labels') or [])}"


@dataclass(frozen=True)
class Plan:
    """The findings to decide, in review order, with the edits each proposes (what accepting it applies)."""

    findings: list[dict[str, Any]]
    keys: list[str]
    edits: dict[str, list[Edit]]  # finding key -> its proposed edits
    proposer: dict[str, str]  # edit key -> the key of the finding that proposed it

    @classmethod
    def of(cls, findings: list[dict[str, Any]], edits: list[Edit]) -> Plan:
        ordered = sorted(findings, key=lambda f: (_SEVERITY.get(f["severity"], 3), -float(f.get("confidence") or 0)))
        keys, seen = [], {}
        for f in ordered:  # two findings of one kind about the same rows get #2, #3...
            key = finding_key(f)
            seen[key] = seen.get(key, 0) + 1
            keys.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
        accusing: dict[int, list[int]] = {}
        for i, f in enumerate(ordered):
            for row in f.get("rows") or []:
                accusing.setdefault(row, []).append(i)
        proposer, by_finding = {}, {k: [] for k in keys}
        for edit in edits:
            candidates = accusing.get(edit.row, [])
            chosen = next(
                (i for i in candidates if ordered[i]["kind"] == edit.kind), candidates[0] if candidates else None
            )
            if chosen is not None:
                proposer[edit.key] = keys[chosen]
                by_finding[keys[chosen]].append(edit)
        return cls(ordered, keys, by_finding, proposer)

    def finding(self, key: str) -> dict[str, Any]:
        return self.findings[self._position[key]]

    @cached_property
    def _position(self) -> dict[str, int]:
        """Each key's place: a page looks up every finding of its queue (a list's index() made that quadratic:
        3.7 s a render of the Review page at 25,000 findings)."""
        return {key: i for i, key in enumerate(self.keys)}


_SEVERITY = {"error": 0, "warning": 1, "info": 2}


@dataclass
class Decision:
    decision: str  # "accepted" | "rejected"
    note: str = ""
    at: float = 0.0


@dataclass
class Decisions:
    """Decisions by finding key, and the log that undo walks back."""

    findings: dict[str, Decision] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    run_id: str = ""

    def state(self, key: str) -> str:
        decision = self.findings.get(key)
        return decision.decision if decision else "pending"

    def decide(self, keys: list[str], state: str, note: str | None = None) -> None:
        """Record one decision (or one bulk decision) for `keys`; undo reverts it as one step."""
        if state not in STATES:
            raise ValueError(f"a decision is one of {', '.join(STATES)}, not {state!r}")
        before = {k: _record(self.findings.get(k)) for k in keys}
        now = time.time()
        for k in keys:
            old = self.findings.get(k)
            self.findings[k] = Decision(state, old.note if note is None and old else (note or ""), now)
        self.history.append({"keys": list(keys), "state": state, "before": before, "at": now})

    def note(self, key: str, text: str) -> None:
        """A note on a decided finding (a note alone is not a decision)."""
        if key in self.findings:
            self.findings[key].note = text

    def undo(self) -> list[str]:
        """Revert the last decision; the keys it touched (none when there is nothing to undo)."""
        if not self.history:
            return []
        step = self.history.pop()
        for key, record in step["before"].items():
            if record is None:
                self.findings.pop(key, None)
            else:
                self.findings[key] = Decision(record["decision"], str(record.get("note") or ""), record.get("at", 0.0))
        return list(step["before"])

    def accepted_edits(self, plan: Plan) -> dict[str, str]:
        """Edit key -> "accepted" | "rejected", from the decision about the finding that proposed it."""
        return {
            edit.key: self.findings[key].decision
            for key, edits in plan.edits.items()
            if key in self.findings
            for edit in edits
        }

    def progress(self, keys: list[str]) -> tuple[int, int]:
        """(decided, of) among `keys`."""
        return sum(1 for k in keys if k in self.findings), len(keys)


def _record(decision: Decision | None) -> dict[str, Any] | None:
    return asdict(decision) if decision else None


def to_json(decisions: Decisions, plan: Plan) -> str:
    """The file's text: decisions by finding, the edits they accept or reject (for other tools), the undo log."""
    record = {
        "version": VERSION,
        "run_id": decisions.run_id,
        "findings": {k: asdict(v) for k, v in sorted(decisions.findings.items())},
        "edits": dict(sorted(decisions.accepted_edits(plan).items())),
        "history": decisions.history,
    }
    return json.dumps(record, indent=1)


def save(folder: Path, decisions: Decisions, plan: Plan) -> Path:
    return write_atomic(Path(folder) / DECISIONS_FILE, to_json(decisions, plan))


def load(folder: Path, plan: Plan, run_id: str = "") -> Decisions:
    """The saved decisions (none when there is no file yet); a damaged file is a DecisionsError."""
    path = Path(folder) / DECISIONS_FILE
    if not path.exists():
        return Decisions(run_id=run_id)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DecisionsError(f"{path} is not readable JSON ({e})") from e
    if not isinstance(data, dict):
        raise DecisionsError(f"{path} holds a JSON {type(data).__name__}, not an object of decisions")
    if "version" not in data:
        return _from_edit_states(data, plan, path, run_id)
    return Decisions(
        {k: _decision(v, path, k) for k, v in (data.get("findings") or {}).items() if k in plan.edits},
        [h for h in data.get("history") or [] if isinstance(h, dict) and _undoable(h.get("before"))],
        str(data.get("run_id") or run_id),
    )


def _undoable(before: Any) -> bool:
    """A logged step undo can revert: each key's previous record is none or a decision."""
    return isinstance(before, dict) and all(
        v is None or (isinstance(v, dict) and v.get("decision") in STATES) for v in before.values()
    )


def _decision(value: Any, path: Path, key: str) -> Decision:
    if not isinstance(value, dict) or value.get("decision") not in STATES:
        raise DecisionsError(f"{path}: the decision about {key!r} must be 'accepted' or 'rejected', not {value!r}")
    return Decision(value["decision"], str(value.get("note") or ""), float(value.get("at") or 0.0))


def _from_edit_states(data: dict[str, Any], plan: Plan, path: Path, run_id: str) -> Decisions:
    """The first version: `{edit key: state}`; each becomes a decision about the finding that proposed the edit."""
    bad = [k for k, v in data.items() if v not in STATES]
    if bad:
        raise DecisionsError(f"{path}: decisions must be 'accepted' or 'rejected'; {bad[0]!r} is {data[bad[0]]!r}")
    found = {plan.proposer[k]: Decision(v) for k, v in data.items() if k in plan.proposer}
    return Decisions(found, [], run_id)

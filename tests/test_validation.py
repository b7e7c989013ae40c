"""Each validation rule produces a finding naming its rows; row errors exclude exactly those rows."""

from __future__ import annotations

import json

from indexer.validation import ValidationConfig, validate
from taxonomy_core.formats import read_manifest
from taxonomy_core.store import StoreLimits
from tests.conftest import write_csv


def run(tmp_path, rows, config=ValidationConfig()):
    full = [{"video": "v.mp4", "start": "", "end": "", "label": "", "split": "", **r} for r in rows]
    return validate(read_manifest(write_csv(tmp_path / "m.csv", full)), config)


def balanced(n=12, labels=("a", "b")):
    return [{"video": f"{label}{i}.mp4", "label": label} for label in labels for i in range(n)]


def find(result, kind, text):
    return [f for f in result.findings if f.kind == kind and text in f.message]


def test_bad_rows_are_excluded_with_reasons(tmp_path):
    rows = balanced() + [
        {"video": "x.mp4", "start": "-1", "end": "2", "label": "a"},
        {"video": "y.mp4", "start": "3", "end": "3", "label": "a"},
        {"video": "z.mp4", "label": ""},
    ]
    result = run(tmp_path, rows)
    assert set(result.excluded) == {24, 25, 26}
    assert find(result, "invalid_annotation", "negative")[0].rows == (24,)
    assert find(result, "invalid_annotation", "not before end")[0].rows == (25,)
    assert find(result, "invalid_annotation", "label is empty")[0].rows == (26,)


def test_label_hygiene_warnings_keep_rows(tmp_path):
    rows = balanced() + [
        {"video": "c.mp4", "label": " a"},
        {"video": "d.mp4", "label": "b,c"},
        {"video": "e.mp4", "label": "A"},
        {"video": "f.mp4", "label": "a", "split": "training-set"},
    ]
    result = run(tmp_path, rows)
    assert set(result.excluded) == {25}  # a comma: AutoML rejects the row, so it is an error, not a warning
    spaces = find(result, "invalid_annotation", "surrounding spaces")[0]
    assert spaces.rows == (24,) and spaces.suggestion == {"label": "a"}
    comma = find(result, "invalid_annotation", "comma")[0]
    assert comma.rows == (25,) and comma.severity == "error" and "row 25" in comma.action
    case = find(result, "invalid_annotation", "differ only by case")[0]
    assert set(case.rows) == {24, 26} and case.suggestion == {"label": "a"}
    assert all(f.action for f in result.findings)
    assert find(result, "invalid_annotation", "unknown split 'training-set'")[0].rows == (27,)


def test_duplicate_and_conflicting_rows(tmp_path):
    rows = balanced() + [
        {"video": "s.mp4", "start": "0", "end": "2", "label": "a"},
        {"video": "s.mp4", "start": "0", "end": "2", "label": "a"},
        {"video": "t.mp4", "start": "0", "end": "2", "label": "a"},
        {"video": "t.mp4", "start": "0.0", "end": "2.0", "label": "b"},
    ]
    result = run(tmp_path, rows)
    repeat = find(result, "invalid_annotation", "repeat the same segment")[0]
    assert repeat.rows == (25,) and [(e.row, e.role) for e in repeat.evidence] == [(24, "kept")]
    conflict = find(result, "invalid_annotation", "differently")[0]
    assert conflict.rows == (27,) and conflict.labels == ("a", "b") and conflict.evidence[0].row == 26
    assert set(result.excluded) == {25, 27}


def test_class_size_rules(tmp_path):
    rows = (
        [{"video": f"a{i}.mp4", "label": "a"} for i in range(300)]
        + [{"video": f"b{i}.mp4", "label": "b"} for i in range(20)]
        + [{"video": f"c{i}.mp4", "label": "c"} for i in range(2)]
    )
    result = run(tmp_path, rows)
    few = {f.labels: f for f in result.findings if f.kind == "too_few_examples"}
    assert few[("c",)].severity == "error" and few[("c",)].rows == ()  # the fix adds clips: no row is accused
    assert few[("b",)].severity == "warning" and "200-per-class" in few[("b",)].message
    assert set(few) == {("c",), ("b",)}
    [imbalance] = [f for f in result.findings if f.kind == "class_imbalance"]
    assert imbalance.severity == "error" and imbalance.labels == ("a", "c") and imbalance.suggestion == {"ratio": 150}
    assert not result.excluded


def test_the_rule_of_thumb_is_one_dataset_wide_finding(tmp_path):
    rows = [{"video": f"{c}{i}.mp4", "label": c} for c in "abcde" for i in range(12)]
    [finding] = [f for f in run(tmp_path, rows).findings if f.kind == "too_few_examples"]
    assert finding.severity == "warning" and finding.labels == tuple("abcde") and "every class" in finding.message


def test_moderate_imbalance_is_a_warning_and_one_class_is_an_error(tmp_path):
    rows = [{"video": f"a{i}.mp4", "label": "a"} for i in range(120)] + [
        {"video": f"b{i}.mp4", "label": "b"} for i in range(10)
    ]
    assert [f.severity for f in run(tmp_path, rows).findings if f.kind == "class_imbalance"] == ["warning"]
    single = run(tmp_path, [{"video": f"a{i}.mp4", "label": "a"} for i in range(12)])
    assert find(single, "too_few_examples", "at least 2")[0].severity == "error"


def test_thresholds_are_configurable(tmp_path):
    result = run(tmp_path, balanced(n=5), ValidationConfig(min_per_class=3, recommended_per_class=4))
    assert not [f for f in result.findings if f.kind == "too_few_examples"]


def test_every_store_field_limit_is_a_row_error(tmp_path):
    limits = StoreLimits()
    long_path = "v/" + "p" * limits.max_video_chars + ".mp4"
    rows = balanced() + [
        {"video": "l.mp4", "label": "a" * (limits.max_label_chars + 1)},
        {"video": "s.mp4", "label": "a", "split": "t" * (limits.max_split_chars + 1)},
        {"video": long_path, "label": "a"},
        {"video": "ok.mp4", "label": "é" * limits.max_label_chars},  # at the limit, in characters, is fine
    ]
    result = run(tmp_path, rows)
    assert set(result.excluded) == {24, 25, 26}
    assert f"label is {limits.max_label_chars + 1} characters long" in result.excluded[24]
    assert f"split is {limits.max_split_chars + 1} characters long" in result.excluded[25]
    assert f"at most {limits.max_video_chars}" in result.excluded[26]
    tight = validate(read_manifest(tmp_path / "m.csv"), limits=StoreLimits(max_label_chars=1))
    assert set(tight.excluded) == {24, 25, 26, 27}  # the limits passed in are the ones applied


def test_control_characters_and_formulas_in_labels_are_row_errors(tmp_path):
    rows = balanced() + [
        {"video": "n.mp4", "label": "high\njump"},
        {"video": "t.mp4", "label": "a\tb"},
        {"video": "u.mp4", "label": "a\u2028b"},
        {"video": "h.mp4", "label": '=HYPERLINK("http://x","a")'},
        {"video": "c.mp4", "label": "+cmd|' /C calc'!A0"},
        {"video": "m.mp4", "label": "@SUM(A1)"},
        {"video": "k.mp4", "label": "-1"},  # a number: a spreadsheet does not run it
        {"video": "s.mp4", "label": "a", "split": "tr\x07ain"},
    ]
    result = run(tmp_path, rows)
    assert set(result.excluded) == {24, 25, 26, 27, 28, 29, 31}
    assert "control character (\\n)" in result.excluded[24] and "(\\t)" in result.excluded[25]
    assert "(\\u2028)" in result.excluded[26]
    for row, lead in ((27, "="), (28, "+"), (29, "@")):
        assert f"starts with '{lead}', so a spreadsheet would run it as a formula" in result.excluded[row]
    [finding] = [f for f in result.findings if f.rows == (27,)]
    assert finding.severity == "error" and "row 27" in finding.action


def test_an_empty_start_and_zero_are_the_same_segment(tmp_path):
    rows = balanced() + [
        {"video": "s.mp4", "start": "", "end": "2", "label": "a"},
        {"video": "s.mp4", "start": "0", "end": "2", "label": "b"},
    ]
    conflict = find(run(tmp_path, rows), "invalid_annotation", "differently")[0]
    assert conflict.rows == (25,) and conflict.evidence[0].row == 24


def test_values_the_store_cannot_encode_are_row_errors(tmp_path):
    path = tmp_path / "m.jsonl"
    records = [{"video": f"{label}{i}.mp4", "label": label} for label in "ab" for i in range(12)]
    lines = [json.dumps(r) for r in records] + [
        '{"video": "s.mp4", "label": "a\\ud800"}',
        '{"video": "i.mp4", "label": "a", "frame_count": 100000000000000000000000}',
        '{"video": "n.mp4", "label": "a", "meta": {"ids": [1, -100000000000000000000000]}}',
        '{"video": "k.mp4", "label": "a", "\\udc80": 1}',
        '{"video": "ok.mp4", "label": "a", "frame_count": 9223372036854775807}',
    ]
    path.write_text("\n".join(lines) + "\n")
    result = validate(read_manifest(path))
    assert set(result.excluded) == {24, 25, 26, 27}
    assert "the label holds an unpaired surrogate" in result.excluded[24]
    assert "column 'frame_count' holds '100000000000000000000000', beyond a 64-bit integer" in result.excluded[25]
    assert "column 'meta' holds" in result.excluded[26] and "a column name holds" in result.excluded[27]


def test_videos_outside_the_roots_are_refused_in_the_same_words_whether_they_exist_or_not(tmp_path):
    """The app's jobs pass their data roots: a manifest inside them may not index what lies outside."""
    data, private = tmp_path / "data", tmp_path / "private"
    data.mkdir()
    private.mkdir()
    (private / "secret.mp4").write_bytes(b"not shown")
    (data / "link.mp4").symlink_to(private / "secret.mp4")
    rows = balanced() + [
        {"video": str(private / "secret.mp4"), "label": "a"},
        {"video": str(private / "missing.mp4"), "label": "a"},
        {"video": "link.mp4", "label": "a"},
        {"video": "../private/secret.mp4", "label": "b"},
    ]
    full = [{"video": "v.mp4", "start": "", "end": "", "label": "", "split": "", **r} for r in rows]
    manifest = read_manifest(write_csv(data / "m.csv", full))
    result = validate(manifest, ValidationConfig(video_roots=(str(data),)))
    outside = {row: reason for row, reason in result.excluded.items() if row >= 24}
    assert sorted(outside) == [24, 25, 26, 27]
    assert len(set(outside.values())) == 1 and "outside the data folders this app reads" in outside[24]
    assert 0 not in result.excluded  # data/a0.mp4: inside the roots (checked later, when decoded)
    assert not [r for r in validate(manifest).excluded.values() if "outside" in r]  # the CLI, without roots

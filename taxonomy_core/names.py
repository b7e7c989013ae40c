"""Names that cannot collide: dataset names (mapped to Milvus collections) and class labels.

A dataset name is 1 to 64 ASCII letters and digits in words joined by single underscores (`ucf101`,
`sports_2024`). Milvus collection names allow letters, digits and underscores only, and
`schema.collection_name` folds every other run of characters into one underscore; a name that is already
in that form passes through unchanged, so two different names never share collections.

Labels are compared by their normal form (NFKC, zero-width characters removed, case folded): two spellings
of one form are the same class written twice, and a word mixing alphabets (a Cyrillic `е` in `hurdlеs`) is
a look-alike of a Latin word, not a new class.
"""

from __future__ import annotations

import re
import unicodedata

from taxonomy_core.store.base import StoreError

DATASET_MAX_CHARS = 64
DATASET_RULE = (
    f"1 to {DATASET_MAX_CHARS} ASCII letters and digits, in words joined by single underscores (e.g. sports_2024)"
)
_DATASET = re.compile(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*")
# Invisible characters that change a string but not what a reader sees.
ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u2061\u2062\u2063\u2064"))
# Alphabets whose letters pass for each other (Latin a, Cyrillic а, Greek α).
_CONFUSABLE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")


DERIVED_SUFFIX = "__reference"  # the audit's own derived dataset (auditor.reference); the store checks clashes


class DatasetNameError(StoreError, ValueError):
    """A dataset name outside the rule; the message gives the rule and a name that follows it."""


def check_dataset_name(name: str) -> str:
    """`name` if it follows the rule; else a DatasetNameError saying why, with a suggestion."""
    base = name.removesuffix(DERIVED_SUFFIX) if name else name
    if _DATASET.fullmatch(base or "") and len(base) <= DATASET_MAX_CHARS:
        return name
    suggestion = suggest_dataset_name(name or "")
    why = "is empty" if not name else f"is {len(name)} characters long" if len(name) > DATASET_MAX_CHARS else ""
    why = why or "has characters outside the rule"
    hint = f"; for example {suggestion!r}" if suggestion and suggestion != name else ""
    raise DatasetNameError(f"the dataset name {name!r} {why}: a dataset name is {DATASET_RULE}{hint}")


def suggest_dataset_name(text: str) -> str:
    """A name following the rule made from `text` (a file name, say): "" when nothing of it fits."""
    ascii_words = re.sub(r"[^A-Za-z0-9]+", "_", unicodedata.normalize("NFKD", text)).strip("_")
    return ascii_words[:DATASET_MAX_CHARS].strip("_")


def normal_label(label: str) -> str:
    """The form two labels are compared in: NFKC, zero-width characters removed, spaces trimmed, case folded."""
    return unicodedata.normalize("NFKC", label).translate(ZERO_WIDTH).strip().casefold()


def invisible(text: str) -> str:
    """The zero-width characters in `text`, as escapes; "" if none."""
    return ", ".join(dict.fromkeys(f"U+{ord(c):04X}" for c in text if ord(c) in ZERO_WIDTH))


def scripts(word: str) -> list[str]:
    """The confusable alphabets the letters of `word` come from, in order of first use."""
    found = []
    for char in word:
        if char.isalpha():
            script = unicodedata.name(char, "").split(" ")[0]
            if script in _CONFUSABLE_SCRIPTS and script not in found:
                found.append(script)
    return found


def mixed_script(label: str) -> list[str]:
    """The alphabets a label's words mix (a word with Latin and Cyrillic letters); [] when none does."""
    for word in re.split(r"[\s_\-./]+", unicodedata.normalize("NFKC", label)):
        found = scripts(word)
        if len(found) > 1:
            return found
    return []


def foreign_letters(label: str, keep: str) -> str:
    """The letters of `label` not from the alphabet `keep`, each as `е` U+0435, for a message."""
    odd = [c for c in label if c.isalpha() and unicodedata.name(c, "").split(" ")[0] != keep]
    return ", ".join(dict.fromkeys(f"{c!r} U+{ord(c):04X} ({unicodedata.name(c, '?').lower()})" for c in odd))


# Letters of other alphabets that look like Latin ones (after Unicode's confusables list, the common ones).
_LOOKALIKES = str.maketrans(
    "аеорсухіјѕԁһӏԛԝАВЕКМНОРСТХІЈЅУαβεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdhlqwABEKMHOPCTXIJSYaBeikvoptuxABEZHIKMNOPTYX",
)


def latin_lookalike(label: str) -> str:
    """The label with look-alike letters of other alphabets written as the Latin letters they pass for."""
    return unicodedata.normalize("NFKC", label).translate(_LOOKALIKES)

"""Milvus filter expressions: every value spliced into one goes through `quote`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def quote(value: Any) -> str:
    """A Milvus expression literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def filter_in(field_name: str, values: Iterable[Any]) -> str:
    return f"{field_name} in [{', '.join(quote(v) for v in values)}]"


def filter_eq(field_name: str, value: Any) -> str:
    return f"{field_name} == {quote(value)}"

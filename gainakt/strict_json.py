"""JSON as its standard has it, for every file and every `--json` output of the project: a number
that is not finite (NaN, an infinity) is written as null, never as the bare `NaN` that strict
readers (JavaScript's JSON.parse, jq, DuckDB) refuse; numpy's numbers are written as Python's."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def dumps(value: Any, **options: Any) -> str:
    """`json.dumps` of `value` with every non-finite number as null (`options` as json.dumps takes)."""
    return json.dumps(finite(value), allow_nan=False, **options)


def finite(value: Any) -> Any:
    """`value` with every non-finite float, at any depth of its dicts, lists and tuples, as None."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def nan_for_null(values: dict[str, Any]) -> dict[str, Any]:
    """A flat mapping read back from JSON with null, where a number is meant, as NaN."""
    return {key: math.nan if item is None else item for key, item in values.items()}


def loads(text: str | bytes) -> Any:
    """`json.loads` that refuses NaN and infinities, as a strict reader does."""
    return json.loads(text, parse_constant=_refuse)


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")

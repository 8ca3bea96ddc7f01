"""The pyarrow schema of each table of the store, built from the definitions of its columns.

Every file of a table is written with the table's one schema: the same columns in the same order
and with the same types, a column a row lacks written as a typed null. So pandas, polars and DuckDB
read a store folder as one table without options, whatever mix of completed, errored, lost and
running trials it holds (a file whose `error` is null next to one whose `error` is text used to
stop them). The types come from the definitions, never from the values of the first row:

- metrics from `gainakt.schema.EvalMetrics` (and the loss components for the epoch table);
- settings (`param.*`, `fixed.*`) from the type hints of the trainer's configuration
  (`setting_hints(TrainConfig)`, called by the writer, because `gainakt.train` imports torch and
  readers must not);
- the trial table's own columns below.

Like the rest of `search`'s schema, this module imports nothing heavier than pyarrow.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import pyarrow as pa

from gainakt import schema as model_schema
from search.schema import CHECKPOINT, FEASIBLE, GUARANTEED, TRIAL_KEY, UNTRAINED, WANDB_RUN, split_column

STRING = pa.string()
INT = pa.int64()
FLOAT = pa.float64()
TIME = pa.timestamp("us", tz="UTC")


def arrow_type(hint: Any) -> pa.DataType:
    """The Parquet type of a setting's Python type hint (`int | None` -> int64, a Literal of
    strings -> string)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if o is not type(None)]
        return arrow_type(options[0]) if len(options) == 1 else STRING
    if typing.get_origin(hint) is typing.Literal:
        return arrow_type(type(typing.get_args(hint)[0]))
    return {bool: pa.bool_(), int: INT, float: FLOAT, str: STRING}.get(hint, STRING)


def setting_hints(config: type, prefix: str = "") -> dict[str, Any]:
    """Every dotted setting of a configuration dataclass and its type hint (`model.gains` -> ...)."""
    out: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(config).items():
        if dataclasses.is_dataclass(hint):
            out.update(setting_hints(hint, f"{prefix}{name}."))  # type: ignore[arg-type]  # a class here
        else:
            out[f"{prefix}{name}"] = hint
    return out


def _metric_fields(column: Callable[[str], str] = model_schema.epoch_name) -> list[pa.Field]:
    hints = typing.get_type_hints(model_schema.EvalMetrics)
    return [
        pa.field(column(f.name), arrow_type(hints[f.name]))
        for f in dataclasses.fields(model_schema.EvalMetrics)
    ]


def trial_schema(
    violation_columns: Sequence[str],
    settings: Mapping[str, pa.DataType],
    constants: Mapping[str, pa.DataType],
) -> pa.Schema:
    """The trial table: one row per trial (`search/run/recorder.py` writes it; the README lists it)."""
    metrics = {f.name: f for f in _metric_fields()}
    return pa.schema(
        [
            (TRIAL_KEY, STRING),
            ("study", STRING),
            ("number", INT),
            ("status", STRING),
            ("error", STRING),
            ("seed", INT),
            ("selected_epoch", INT),
            ("epochs", INT),
            *[(name, metrics[name].type if name in metrics else FLOAT) for name in model_schema.METRICS],
            *[(column, FLOAT) for column in violation_columns],
            (FEASIBLE, pa.bool_()),
            (GUARANTEED, STRING),
            (UNTRAINED, STRING),
            *settings.items(),
            *constants.items(),
            ("node_id", STRING),
            ("hostname", STRING),
            ("device", STRING),
            ("gpu_ids", STRING),
            ("gpu_memory_mib", FLOAT),
            (CHECKPOINT, STRING),
            ("trial_dir", STRING),
            (WANDB_RUN, STRING),
            ("started_at", TIME),
            ("ended_at", TIME),
            ("train_seconds", FLOAT),
        ]
    )


def epoch_schema() -> pa.Schema:
    """The epoch table: one row per trial and epoch, the trainer's `EpochRow.flat()` plus where
    its checkpoint is and when it was reported."""
    components = model_schema.LOSS_COMPONENTS
    return pa.schema(
        [
            (TRIAL_KEY, STRING),
            ("epoch", INT),
            (model_schema.TRAIN_LOSS, FLOAT),
            *[(f"loss_{name}", FLOAT) for name in components],
            *[(f"share_{name}", FLOAT) for name in components],
            *_metric_fields(),
            *[(f"monitor_{name}", FLOAT) for name in model_schema.MONITOR_METRICS],
            ("lr", FLOAT),
            ("seconds", FLOAT),
            ("interactions_per_s", FLOAT),
            (CHECKPOINT, STRING),
            ("reported_at", TIME),
        ]
    )


def confirm_schema(
    settings: Mapping[str, pa.DataType], splits: Sequence[str] = ("valid", "test")
) -> pa.Schema:
    """The confirm table: one row per confirmation run and per (baseline, fold) (`search/run/confirm.py`)."""
    return pa.schema(
        [
            ("key", STRING),
            ("source", STRING),
            ("seed", INT),
            ("fold", INT),
            ("kind", STRING),
            ("status", STRING),
            ("error", STRING),
            *settings.items(),
            ("selected_epoch", INT),
            ("epochs_run", INT),
            *[f for split in splits for f in _metric_fields(partial(split_column, split))],
            ("train_seconds", FLOAT),
            ("data", STRING),
            ("data_fingerprint", STRING),
        ]
    )


def settings_of(schema: pa.Schema, prefix: str) -> dict[str, pa.DataType]:
    """The columns of `schema` that start with `prefix` (e.g. the trial table's `param.*`)."""
    return {f.name: f.type for f in schema if f.name.startswith(prefix)}


# ---------------------------------------------------------------------------- rows to tables


def value_type(value: Any) -> pa.DataType | None:
    """The type of a column known only from a value (None for a missing value)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, datetime):
        return TIME
    try:
        return pa.array([value]).type
    except (pa.ArrowException, TypeError, ValueError):
        return STRING


def widen(schema: pa.Schema, rows: Iterable[Mapping[str, Any]]) -> pa.Schema:
    """`schema` with a field for every column of `rows` it lacks, typed from their values (string
    where every value is missing: a typed column, never pyarrow's `null`)."""
    known = set(schema.names)
    seen: dict[str, pa.DataType | None] = {}
    for row in rows:
        for column, value in row.items():
            if column not in known and seen.get(column) is None:
                seen[column] = value_type(value)
    return pa.schema([*schema, *[(column, kind or STRING) for column, kind in seen.items()]])


def to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """`rows` as a table of exactly `schema`: missing columns as typed nulls, NaT and None as nulls,
    NaN kept as NaN in float columns."""
    columns = []
    for field in schema:
        values = [_cell(row.get(field.name), field.type) for row in rows]
        columns.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _cell(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_timestamp(kind):
        return _timestamp(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and math.isnan(value) and not pa.types.is_floating(kind):
        return None  # pandas' missing value in a column that is not a float
    if pa.types.is_string(kind) and not isinstance(value, str):
        return str(value)
    return value


def _timestamp(value: Any) -> datetime | None:
    import pandas as pd

    stamp = pd.Timestamp(value) if not isinstance(value, pd.Timestamp) else value
    if pd.isna(stamp):
        return None
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A table read from a file written with another schema (an older store, a column added
    since), in `schema`, which holds every column of `table`: missing columns as typed nulls, types
    cast (an old file's `null` column becomes the declared type)."""
    if table.schema.equals(schema, check_metadata=False):
        return table
    extra = set(table.column_names) - set(schema.names)
    if extra:
        raise ValueError(f"columns {sorted(extra)} are not in the table's schema")
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            columns.append(column if column.type == field.type else column.cast(field.type))
        else:
            columns.append(pa.nulls(len(table), type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)

"""The store read as its users read it: pandas, polars and DuckDB on the folders, without options."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO
from study_helpers import fake_study, put_trial_like

from search.schema import violation_column
from search.store.segments import Schemas, Store
from search.store.study import Study
from search.store.tables import trial_schema


def _mixed_study(tmp_path, compacted: bool = False) -> Study:
    """A store with completed and errored trials (the simulated demo), one running and one lost;
    `compacted`: its settled trials moved into a segment, as at the end of a driver."""
    study = fake_study(tmp_path, "mixed", trials=5)
    now = pd.Timestamp("2026-01-02", tz="UTC")
    put_trial_like(study, "running1", status="RUNNING", ended_at=pd.NaT, selected_epoch=None, error=None)
    put_trial_like(study, "lost0001", status="LOST", ended_at=now, error="unknown to the restored Tuner")
    if compacted:
        assert Store(study).compact(min_trials=1) == 5  # four completed, one lost
        assert any(p.name.startswith("segment-") for p in Path(study.trials_dir).iterdir())
    return study


LAYOUTS = pytest.mark.parametrize("compacted", [False, True], ids=["live files", "compacted"])


def _readers(folder) -> dict[str, pd.DataFrame]:
    """The folder as each tool reads it, as docs/study-folder.md writes the lines, sorted by trial."""
    frames = {
        "pandas": pd.read_parquet(folder),
        "polars": pl.read_parquet(f"{folder}/*.parquet").to_pandas(),
        "duckdb": duckdb.sql(f"SELECT * FROM read_parquet('{folder}/*.parquet')").df(),
    }
    keys = ["trial_id", "epoch"] if "epoch" in frames["pandas"] else ["trial_id"]
    return {name: f.sort_values(keys, ignore_index=True) for name, f in frames.items()}


@LAYOUTS
@pytest.mark.parametrize("table", ["trials", "epochs"])
def test_pandas_polars_and_duckdb_read_a_store_of_every_status_without_options(tmp_path, table, compacted):
    study = _mixed_study(tmp_path, compacted)
    frames = _readers(f"{study.root}/store/{table}")
    keys = ["trial_id", "epoch"] if table == "epochs" else ["trial_id"]
    ours = getattr(Store(study), table)().sort_values(keys, ignore_index=True)
    for name, frame in frames.items():
        assert list(frame.columns) == list(ours.columns), name
        assert len(frame) == len(ours), name
        for key in keys:
            assert list(frame[key]) == list(ours[key]), name
        assert frame["auc"].astype(float).round(12).equals(ours["auc"].round(12)), name
    if table == "trials":
        statuses = set(ours["status"])
        assert statuses == {"COMPLETED", "ERROR", "RUNNING", "LOST"}
        for name, frame in frames.items():
            assert list(frame["status"]) == list(ours["status"]), name
            errors = [e if isinstance(e, str) else None for e in frame["error"]]
            assert errors == [e if isinstance(e, str) else None for e in ours["error"]], name
            assert frame["auc"].astype(float).round(12).equals(ours["auc"].round(12)), name
            ended = pd.to_datetime(frame["ended_at"], utc=True)
            assert ended.isna().tolist() == ours["ended_at"].isna().tolist(), name


def test_every_file_of_a_table_has_the_same_schema_with_typed_nulls(tmp_path):
    _mixed_study(tmp_path)
    schemas = [pq.read_schema(p) for p in sorted((tmp_path / "mixed" / "store" / "trials").glob("*.parquet"))]
    assert all(s.equals(schemas[0], check_metadata=False) for s in schemas)
    types = {f.name: f.type for f in schemas[0]}
    assert types["error"] == pa.string() and types["ended_at"] == pa.timestamp("us", tz="UTC")
    assert types["selected_epoch"] == pa.int64() and types["feasible"] == pa.bool_()
    assert not any(pa.types.is_null(t) for t in types.values())


def test_a_store_written_before_the_schemas_reads_and_is_rewritten_in_them(tmp_path):
    """Before, each file took its types from its own row: null `error` beside text stopped pandas."""
    study = fake_study(tmp_path, "old", trials=3)
    folder = tmp_path / "old" / "store" / "trials"
    rows = Store(study).trials().to_dict("records")
    for row in rows:  # written the old way: pandas' types, a completed trial's error a null column
        row["error"] = row["error"] if isinstance(row["error"], str) else None
        row["checkpoint"] = study.relative(row["checkpoint"])
        row["trial_dir"] = study.relative(row["trial_dir"])
        pq.write_table(
            pa.Table.from_pandas(pd.DataFrame([row]), preserve_index=False),
            folder / f"{row['trial_id']}.parquet",
        )
    assert {str(pq.read_schema(p).field("error").type) for p in folder.glob("*.parquet")} == {
        "null",
        "large_string",
    }
    before = Store(study).trials()
    assert list(before["status"]) == ["COMPLETED", "COMPLETED", "ERROR"]

    violations = [violation_column(c) for c in study.read_spec().constraints]
    driver = Store(study, Schemas(trials=trial_schema(violations, {}, {})))  # as a resuming driver has it
    assert driver.conform_files("trials") == 3
    schemas = [pq.read_schema(p) for p in folder.glob("*.parquet")]
    assert all(s.equals(schemas[0], check_metadata=False) for s in schemas)
    after = Store(study).trials()
    pd.testing.assert_frame_equal(after[before.columns], before, check_dtype=False, check_index_type=False)
    assert len(pd.read_parquet(folder)) == 3
    assert driver.conform_files("trials") == 0  # already in the schema: nothing rewritten


def test_a_column_only_a_later_trial_has_reaches_every_file(tmp_path):
    """A conditional setting first sampled by a later trial: the earlier files get it as a typed null."""
    study = fake_study(tmp_path, "grown", trials=3)
    put_trial_like(study, "late0001", **{"param.model.dropout": 0.25})
    folder = tmp_path / "grown" / "store" / "trials"
    schemas = [pq.read_schema(p) for p in folder.glob("*.parquet")]
    assert all(s.field("param.model.dropout").type == pa.float64() for s in schemas)
    read = pd.read_parquet(folder).set_index("trial_id")["param.model.dropout"]
    assert read["late0001"] == 0.25 and read.drop("late0001").isna().all()


@LAYOUTS
def test_the_docs_lines_read_a_mixed_store_as_written(tmp_path, monkeypatch, compacted):
    readme = (REPO / "docs" / "study-folder.md").read_text()
    block = readme.split("<!-- store-readers -->\n```python\n", 1)[1].split("```", 1)[0]
    _mixed_study(tmp_path / "runs", compacted)
    (tmp_path / "runs" / "quickstart").symlink_to(tmp_path / "runs" / "mixed")
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(block, "docs/study-folder.md", "exec"), names)
    assert len(names["trials"]) == 7 and set(names["trials"]["status"]) >= {"ERROR", "RUNNING", "LOST"}
    assert names["epochs"].height == len(Store(Study(str(tmp_path / "runs"), "mixed")).epochs())
    assert list(names["best"]["auc"]) == sorted(names["trials"]["auc"].dropna(), reverse=True)[:3]

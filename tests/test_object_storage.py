"""Studies in S3-compatible object storage, against a real local S3 server (moto's, over HTTP):
the store, spec and report in the bucket, the reading commands reading from it alone."""

from __future__ import annotations

import json

import pyarrow.fs as pafs
import pytest
from study_helpers import fake_study

from search.cli import main
from search.store import Store
from search.study import Study


def _bucket_files(storage: str) -> list[str]:
    fs, root = pafs.FileSystem.from_uri(storage)
    return sorted(
        i.path.removeprefix(f"{root}/") for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
    )


def test_a_study_in_a_bucket_is_read_from_the_bucket_alone_and_its_report_is_written_there(
    s3_storage, tmp_path, monkeypatch, capsys
):
    study = fake_study(s3_storage, "remote", 12)
    assert not study.local and study.location.startswith("s3://") and "?" not in study.location
    work = tmp_path / "elsewhere"  # a fresh working folder: nothing local but what -o asks for
    work.mkdir()
    monkeypatch.chdir(work)

    assert main(["status", "remote", "--storage", s3_storage]) == 0
    assert "11 completed, 1 error" in capsys.readouterr().out
    assert main(["pareto", "remote", "--storage", s3_storage, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["checkpoint"].startswith(f"{study.location}/tune/") for r in rows)
    assert main(["report", "remote", "--storage", s3_storage]) == 0
    assert f"report: {study.location}/report.html" in capsys.readouterr().out
    assert main(["report", "remote", "--storage", s3_storage, "-o", "local/report.html"]) == 0

    files = _bucket_files(s3_storage)
    assert {"remote/spec.json", "remote/data.json", "remote/report.html", "remote/report.md"} <= set(files)
    assert sum(f.startswith("remote/store/trials/") for f in files) == 12
    assert sum(f.startswith("remote/store/epochs/") for f in files) == 12
    assert sorted(p.name for p in work.rglob("*")) == ["local", "report.html", "report.md"]
    assert "Pareto report" in (work / "local" / "report.html").read_text()
    # The store reads the same from the bucket as it was written.
    assert len(Store(Study(s3_storage, "remote")).trials()) == 12


@pytest.mark.parametrize(
    "storage, expected",
    [
        ("s3://{bucket_missing}/studies?{options}", "study 'remote' not found"),
        ("foo://bar/studies", "pyarrow cannot open it"),
        ("s3://bucket/studies?endpoint_override=127.0.0.1:1&scheme=http", "cannot be read"),
    ],
    ids=["missing bucket", "unknown scheme", "unreachable endpoint"],
)
def test_bad_storage_is_one_line_and_exit_2(
    s3_storage, s3_server, storage, expected, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    options = f"endpoint_override={s3_server}&scheme=http"
    given = storage.format(bucket_missing="no-such-bucket", options=options)
    assert main(["status", "remote", "--storage", given]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written

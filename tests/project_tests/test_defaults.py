"""Each default and each list is defined once, and the docs and --help are drawn from it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import REPO

from gainakt.presets import DEFAULT_PRESET, PRESETS
from search.cli import build_parser
from search.spec import NOT_FIXED, SWEEP_SETTINGS, SweepSpec, defaults_markdown
from search.store.layout import LAYOUT, layout_markdown

PACKAGES = ("gainakt", "spaces", "search")


def marked_block(doc: str, marker: str) -> str:
    text = (REPO / "docs" / doc).read_text()
    found = re.search(rf"<!-- {marker} -->\n(.*?)<!-- /{marker} -->\n", text, flags=re.S)
    assert found, f"docs/{doc} has no <!-- {marker} --> block"
    return found.group(1)


def test_the_docs_show_the_layout_and_the_defaults_the_code_has() -> None:
    assert marked_block("study-folder.md", "layout") == layout_markdown()
    assert marked_block("sweeps.md", "defaults") == defaults_markdown()
    assert all(f"`{entry.path}`" in layout_markdown() for entry in LAYOUT)


def help_text(*argv: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "10000")  # argparse wraps at the terminal's width, even inside a word
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_run_help_states_every_default_of_the_spec(capsys, monkeypatch) -> None:
    text = help_text("run", capsys=capsys, monkeypatch=monkeypatch)
    default = SweepSpec()
    assert f"replaces the defaults {', '.join(map(str, default.constraints))};" in text
    assert f"replaces the default {', '.join(map(str, default.objectives))};" in text
    for flag in ("trials", "concurrent", "seed", "sampler", "scheduler", "storage"):
        value = getattr(default, flag)
        assert re.search(rf"--{flag} \S+ .*?\(default {value}\)", text), flag
    assert f"(default {default.preset})" in text and default.preset == DEFAULT_PRESET in PRESETS


def test_train_help_states_the_default_preset(capsys, monkeypatch) -> None:
    text = help_text("train", capsys=capsys, monkeypatch=monkeypatch)
    assert f"starting settings (default {DEFAULT_PRESET})" in text


def string_pieces(path: Path) -> list[str]:
    """Every string literal of a module, f-string pieces included, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def code_files() -> list[Path]:
    return [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]


def test_the_default_preset_is_named_once() -> None:
    naming = [p.relative_to(REPO) for p in code_files() if DEFAULT_PRESET in string_pieces(p)]
    assert naming == [Path("gainakt/presets.py")]


def test_study_file_names_are_written_only_in_the_layout() -> None:
    # the file names; folder names such as store/ and wandb/ are ordinary words elsewhere too
    names = {Path(entry.path).name for entry in LAYOUT if "." in Path(entry.path).name} - {"*.parquet"}
    written = {
        f"{p.relative_to(REPO)}: {piece!r}"
        for p in code_files()
        if p.name != "layout.py"
        for piece in string_pieces(p)
        if any(piece == name or piece.endswith("/" + name) for name in names)
    }
    assert written == set()


def test_the_settings_a_sweep_owns_are_one_list() -> None:
    assert set(SWEEP_SETTINGS) <= NOT_FIXED  # a setting the sweep sets is never a fixed column
    assert {"device", "wandb_project"} <= NOT_FIXED - set(SWEEP_SETTINGS)


def test_run_help_lists_every_registered_space() -> None:
    import spaces
    from search.spec import BUILT_IN_SPACES

    assert sorted(BUILT_IN_SPACES) == spaces.names()
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    assert all(name in run.format_help() for name in spaces.names())

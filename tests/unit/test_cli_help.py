"""`build --help` and `sweep --help` a person can scan: every option in a panel by topic (PANELS), none left in
the default "Options" box but --help, each help one sentence; docs/cli.md has the same panels and options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main
from typer.testing import CliRunner

from edgekiln.compiler.cli import app
from edgekiln.compiler.cli_options import PANELS, SWEEP

ROOT = Path(__file__).resolve().parents[2]
BOX_TOP = re.compile(r"╭─ (.+?) ─")
ROW_FLAG = re.compile(r"│ (?:\* )?\s*(--[a-z0-9][a-z0-9-]*)")  # a required option is starred


def _help_boxes(command: str) -> dict[str, list[str]]:
    """The panels of `edgekiln COMMAND --help` as rendered, in order: each panel's first flag of every row."""
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    boxes: dict[str, list[str]] = {}
    current: list[str] = []
    for line in result.output.splitlines():
        if top := BOX_TOP.match(line):
            current = boxes.setdefault(top.group(1), [])
        elif flag := ROW_FLAG.match(line):
            current.append(flag.group(1))
    return boxes


def _options(command: str) -> list[Any]:
    """The command's options (no arguments), as click declares them."""
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return [p for p in params if isinstance(p, typer.core.TyperOption)]


def _long_flag(option: Any) -> str:
    return next(flag for flag in option.opts if flag.startswith("--"))


def test_build_help_shows_every_option_in_a_panel_by_topic():
    boxes = _help_boxes("build")
    assert boxes.pop("Options") == ["--help"]  # nothing left in typer's default box
    assert boxes.pop("Arguments") == []
    assert tuple(boxes) == PANELS  # the topics, in the order of cli_options.PANELS
    shown = [flag for flags in boxes.values() for flag in flags]
    assert sorted(shown) == sorted(_long_flag(o) for o in _options("build"))  # each option once


def test_sweep_help_has_builds_panels_and_its_own():
    boxes = _help_boxes("sweep")
    assert boxes.pop("Options") == ["--help"]
    assert set(boxes) - {"Arguments"} == {*PANELS, SWEEP}
    assert boxes[SWEEP] == ["--quantize", "--format", "--prune", "--jobs", "--executor", "--ray-address",
                            "--distill"]
    shown = [flag for name, flags in boxes.items() for flag in flags]
    assert sorted(shown) == sorted(_long_flag(o) for o in _options("sweep"))


def test_every_build_and_sweep_help_line_is_one_sentence():
    texts = {f"{command} {_long_flag(o)}": o.help or "" for command in ("build", "sweep") for o in _options(command)}
    assert len(texts) > 60
    # a sentence ends in "." and holds no ". " before a capital (an "e.g. 0.485" or a file name does not end one)
    not_one = sorted(name for name, text in texts.items() if not text.endswith(".") or re.search(r"\. [A-Z]", text))
    assert not_one == []


def _build_sections(page: Path) -> dict[str, str]:
    """The `### heading` sections of the page's `## edgekiln build` part: heading -> its text."""
    build = re.split(r"^## ", page.read_text(), flags=re.M)
    part = next(text for text in build if text.startswith("edgekiln build\n"))
    pieces = re.split(r"^### (.+)$", part, flags=re.M)
    return dict(zip(pieces[1::2], pieces[2::2], strict=True))


def test_docs_cli_lists_every_build_option_under_its_panel():
    sections = _build_sections(ROOT / "docs" / "cli.md")
    assert tuple(sections) == PANELS
    options = _options("build")
    assert len(options) > 40 and all(o.rich_help_panel in PANELS for o in options)
    missing = [f"{o.rich_help_panel}: {_long_flag(o)}" for o in options
               if f"`{_long_flag(o)}" not in sections[o.rich_help_panel]]
    assert missing == []

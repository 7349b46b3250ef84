"""mypy checks the package under the names the code imports (`edgekiln.compiler...`): .typecheck/edgekiln/ must
mirror pyproject.toml's package-dir, else a module's imports silently become Any again."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_installed_package_is_linked_for_mypy() -> None:
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    tree = ROOT / ".typecheck"
    assert {"edgekiln", "edgekiln.compiler", "edgekiln.runtime", "edgekiln.targets"} <= set(package_dir)
    for name, folder in package_dir.items():
        linked = tree.joinpath(*name.split("."))
        if name == "edgekiln":  # the top package is a real folder: its modules are linked one by one
            assert {p.name for p in linked.glob("*.py")} == {p.name for p in (ROOT / folder).glob("*.py")}
            assert all(p.resolve() == (ROOT / folder / p.name).resolve() for p in linked.glob("*.py"))
        else:
            assert linked.is_symlink() and linked.resolve() == (ROOT / folder).resolve(), name


def test_mypy_reads_the_linked_tree() -> None:
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["files"] == [".typecheck/edgekiln"] and mypy["mypy_path"] == ".typecheck"

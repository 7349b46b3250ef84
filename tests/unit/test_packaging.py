"""One import package: the distribution installs `edgekiln` only, and `edgekiln.build` / `edgekiln.load` are the API."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

FOLDERS = {"edgekiln.compiler": "compiler", "edgekiln.runtime": "runtime", "edgekiln.targets": "targets"}


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"edgekiln"}
    for name, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *relative)))
    assert listed == found


def _outside_the_repo(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run code with the installed distribution only: from a folder that is not the checkout."""
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_the_old_top_level_names_are_not_installed(tmp_path: Path) -> None:
    for name in ("compiler", "runtime", "targets"):
        done = _outside_the_repo(f"import {name}", tmp_path)
        assert done.returncode != 0 and f"No module named '{name}'" in done.stderr


def test_the_api_is_importable_without_tensorflow(tmp_path: Path) -> None:
    code = ("import sys, edgekiln; from edgekiln import targets; "
            "assert callable(edgekiln.build) and callable(edgekiln.load); "
            "assert edgekiln.Recipe.__name__ == 'Recipe' and targets.load('rpi4').arch == 'aarch64'; "
            "assert 'tensorflow' not in sys.modules, 'importing the API pulled TensorFlow'")
    done = _outside_the_repo(code, tmp_path)
    assert done.returncode == 0, done.stderr


def test_the_api_takes_the_recipe_keys_and_checks_them(tmp_path: Path) -> None:
    code = ("import edgekiln\n"
            "for options in ({'target': 'rpi4', 'quantise': 'int8'}, {'target': 'rpi4', 'quantize': 'int4'}):\n"
            "    try:\n"
            "        edgekiln.build('m.keras', **options)\n"
            "    except edgekiln.EdgekilnError as e:\n"
            "        print(e.one_line())\n")
    done = _outside_the_repo(code, tmp_path)
    assert done.returncode == 0, done.stderr
    unknown, bad = done.stdout.splitlines()
    assert unknown.startswith("unknown option(s) quantise (edgekiln.build takes ")
    assert bad.startswith("quantize must be one of auto, int8, float16, dynamic, none, got 'int4'")

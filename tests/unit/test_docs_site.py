"""The documentation site: mkdocs.yml's nav lists every docs page once, in docs/index.md's order; the site builds
with --strict (a link to a missing page or anchor, or a docstring the API reference cannot read, fails it) and
its API reference documents the public API; `make docs` and `make test` install what that build needs."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

from edgekiln.compiler.recipe import Recipe
from tests.system import require

ROOT = Path(__file__).resolve().parents[2]
NAV_PAGE = re.compile(r"^\s+- (?:[^:\n]+: )?([\w-]+\.md)\s*$", re.M)  # "  - Title: page.md" under nav:
LINK = re.compile(r"\]\(([\w-]+\.md)\)")  # [text](page.md), as index.md's tables link pages


def _nav() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    return NAV_PAGE.findall(text[text.index("\nnav:"):])


def test_the_nav_follows_the_index_and_lists_every_page():
    index = list(dict.fromkeys(LINK.findall((ROOT / "docs" / "index.md").read_text())))
    assert _nav() == ["index.md", *index]
    assert sorted(_nav()) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))


def test_make_docs_and_make_test_install_the_docs_extra_and_build_strictly():
    makefile = (ROOT / "Makefile").read_text()
    assert "mkdocs build --strict" in makefile and "-e '.[docs]'" in makefile
    test_target = re.search(r"^test:(.*)$", makefile, re.M)
    assert test_target is not None and "$(BIN)/mkdocs" in test_target.group(1).split()  # the suite builds the site
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^docs = \["mkdocs==[\d.]+", "mkdocs-material==[\d.]+", "mkdocstrings\[python\]==[\d.]+", '
                     r'"mkdocstrings-python==[\d.]+"\]$', pyproject, re.M)


# The public API (edgekiln/__init__.py's __all__, and what `load` returns) and its anchor on the reference page.
REFERENCE = {"build": "edgekiln.build", "load": "edgekiln.load", "Recipe": "edgekiln.compiler.recipe.Recipe",
             "BuildResult": "edgekiln.compiler.pipeline.BuildResult",
             "EdgekilnError": "edgekiln.compiler.errors.EdgekilnError", "BundleModel": "edgekiln.runtime.BundleModel",
             "BundleModel.predict": "edgekiln.runtime.BundleModel.predict",
             "BundleModel.validate": "edgekiln.runtime.BundleModel.validate",
             "ValidationReport": "edgekiln.runtime.model.ValidationReport"}


def test_the_site_builds_strictly_and_its_api_reference_documents_the_public_api(tmp_path):
    """`make docs`'s build (into tmp_path, not site/): mkdocstrings reads the docstrings through .typecheck/."""
    found = all(importlib.util.find_spec(name) for name in ("mkdocs", "material", "mkdocstrings_handlers"))
    require(None if found else "mkdocs / mkdocstrings are missing: `make docs` or `make test` installs the docs extra")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=600)
    assert built.returncode == 0, built.stderr[-4000:]
    page = (tmp_path / "reference" / "index.html").read_text()
    import edgekiln

    assert set(edgekiln.__all__) - {"__version__"} <= set(REFERENCE)
    assert [name for name, anchor in REFERENCE.items() if f'id="{anchor}"' not in page] == []


def test_every_recipe_field_is_documented_in_its_attributes_section():
    """The reference's table of Recipe fields comes from the docstring's `Attributes:`: one entry per field."""
    doc = Recipe.__doc__ or ""
    documented = re.findall(r"^ {8}(\w+): ", doc[doc.index("Attributes:"):], re.M)
    assert sorted(documented) == sorted(f.name for f in dataclasses.fields(Recipe))

"""mkdocs.yml's nav lists every docs page once, in docs/index.md's order (`make docs` builds the site with
--strict, which fails on a link to a missing page or anchor; these checks need no MkDocs)."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_make_docs_builds_strictly_with_the_docs_extra_only():
    makefile = (ROOT / "Makefile").read_text()
    assert "mkdocs build --strict" in makefile and "-e '.[docs]'" in makefile
    test_target = re.search(r"^test:(.*)$", makefile, re.M)
    assert test_target is not None and "docs" not in test_target.group(1)  # `make test` stays without MkDocs
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^docs = \["mkdocs==[\d.]+", "mkdocs-material==[\d.]+"\]$', pyproject, re.M)

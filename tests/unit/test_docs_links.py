"""The README is short and points into docs/: every relative link there and in docs/*.md names a file."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)


def _relative_links(page: Path) -> list[str]:
    targets = [t.split("#")[0] for t in LINK.findall(page.read_text())]
    return [t for t in targets if t and not re.match(r"[a-z]+:", t)]  # not http:, mailto:


def test_every_docs_link_of_the_readme_resolves_to_a_file():
    links = _relative_links(ROOT / "README.md")
    assert [t for t in links if t.startswith("docs/")], "the README links into docs/"
    missing = [t for t in links if not (ROOT / t).is_file()]
    assert missing == []


def test_every_relative_link_between_docs_pages_resolves():
    pages = sorted((ROOT / "docs").glob("*.md"))
    assert ROOT / "docs" / "index.md" in pages
    missing = [f"{page.name}: {t}" for page in pages for t in _relative_links(page)
               if not (page.parent / t).is_file()]
    assert missing == []


def test_the_index_lists_every_docs_page():
    index = set(_relative_links(ROOT / "docs" / "index.md"))
    assert {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"} <= index


def test_the_readme_keeps_its_two_set_up_commands_and_stays_short():
    text = (ROOT / "README.md").read_text()
    assert "make demo " in text and "make test " in text
    assert len(text.splitlines()) < 120

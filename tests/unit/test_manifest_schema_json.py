"""docs/manifest.schema.json and docs/manifest.md are what tests/manifest_schema_json.py generates from
compiler/manifest_schema.py, and every recorded manifest is valid against that schema (jsonschema)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.manifest_schema_json import PAGE_FILE, SCHEMA_FILE, schema, schema_text
from tests.manifest_schema_page import page_text
from tests.manifest_snapshot import MASKED_KEYS

ROOT = Path(__file__).resolve().parents[2]
RECORDED = sorted((ROOT / "tests" / "data" / "manifests").glob("*.json"))
BUNDLE_MANIFEST = ROOT / "tests" / "unit" / "report" / "bundle" / "manifest.json"
REGENERATE = "regenerate: python -m tests.manifest_schema_json --write"


def test_the_committed_schema_is_the_generated_one():
    assert SCHEMA_FILE.read_text() == schema_text(), REGENERATE


def test_the_committed_docs_page_is_the_generated_one():
    assert PAGE_FILE.read_text() == page_text(schema()), REGENERATE


def _accepting_masks(node: Any) -> Any:
    """The schema where a key that tests/manifest_snapshot.py masks may also hold "<masked>"."""
    if isinstance(node, dict):
        out = {k: _accepting_masks(v) for k, v in node.items()}
        if isinstance(node.get("properties"), dict):
            out["properties"] = {key: ({"anyOf": [prop, {"const": "<masked>"}]} if key in MASKED_KEYS else prop)
                                 for key, prop in out["properties"].items()}
        return out
    return [_accepting_masks(v) for v in node] if isinstance(node, list) else node


def _errors(manifest: dict[str, Any], masked: bool = False) -> list[str]:
    """Every way `manifest` breaks the schema, as 'path: message' (inside a `T | None`, the error against T)."""
    validator = jsonschema.Draft202012Validator(_accepting_masks(schema()) if masked else schema())
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for error in validator.iter_errors(manifest) for e in _deepest(error))


def _deepest(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors at the deepest path under an anyOf's alternatives (the one alternative the value was meant
    for), or the error itself."""
    if not error.context:
        return [error]
    leaves = [leaf for e in error.context for leaf in _deepest(e)]
    depth = max(len(leaf.absolute_path) for leaf in leaves)
    return [leaf for leaf in leaves if len(leaf.absolute_path) == depth]


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
def test_every_recorded_manifest_is_valid(path: Path):
    assert _errors(json.loads(path.read_text()), masked=True) == []


def test_the_stored_report_bundle_manifest_is_valid():
    assert len(RECORDED) >= 6  # the snapshots above are there to be checked
    assert _errors(json.loads(BUNDLE_MANIFEST.read_text())) == []


def test_the_schema_refuses_an_undeclared_key_a_missing_section_and_a_wrong_type():
    bad = json.loads(BUNDLE_MANIFEST.read_text())
    bad["latency"]["host"]["p50"] = 1.0  # a key no TypedDict declares
    del bad["golden"]
    bad["size"]["model_bytes"] = "12 kB"
    bad["pruning"]["recovery"]["used"] = "no"  # inside `Pruning | None`
    assert _errors(bad) == [": 'golden' is a required property",
                            "latency.host: Additional properties are not allowed ('p50' was unexpected)",
                            "pruning.recovery.used: 'no' is not of type 'boolean'",
                            "size.model_bytes: '12 kB' is not of type 'integer'"]

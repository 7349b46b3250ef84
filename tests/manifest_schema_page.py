"""docs/manifest.md from the manifest's JSON Schema (tests/manifest_schema_json.py writes both): a section per
object, a row per key with its type, whether every manifest has it, and what it is."""

from __future__ import annotations

from typing import Any

INTRO = """# The manifest, field by field

Every bundle's `manifest.json` is one object, `Manifest` below; each figure section says how it was made
(`how`, a [Provenance](#provenance)), and [bundle.md](bundle.md) tells the story of the sections. The same
declaration as JSON Schema: [manifest.schema.json](manifest.schema.json) (validate a manifest with any JSON
Schema 2020-12 validator). A key marked *optional* is written only by some builds; `null` where the type allows
it means "not computed" or "none", never 0 (the manifest's `null_values` says which).

This page and the schema are generated from the TypedDicts of `compiler/manifest_schema.py`
(`python -m tests.manifest_schema_json --write`): edit those, not this page.
"""


def type_text(prop: dict[str, Any]) -> str:
    """A property's type in words, a nested object as a link to its section."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in prop:
        return " or ".join(type_text(part) for part in prop["anyOf"])
    kind = prop.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        return f"list of {type_text(prop['items'])}"
    if kind == "object" and "additionalProperties" in prop:
        return f"map of {type_text(prop['additionalProperties'])}"
    return kind or "any"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def section(name: str, definition: dict[str, Any]) -> str:
    """One object: its description, then a table of its keys."""
    lines = [f"## {name}", ""]
    if definition.get("description"):
        lines += [definition["description"], ""]
    lines += ["| key | type | | what it is |", "|---|---|---|---|"]
    required = set(definition["required"])
    for key, prop in definition["properties"].items():
        presence = "" if key in required else "*optional*"
        lines.append(f"| `{key}` | {_cell(type_text(prop))} | {presence} | {_cell(prop.get('description', ''))} |")
    return "\n".join(lines) + "\n"


def page_text(schema: dict[str, Any]) -> str:
    """The whole page: the introduction, then every object in the schema's order (Manifest first)."""
    return "\n".join([INTRO, *(section(name, d) for name, d in schema["$defs"].items())])

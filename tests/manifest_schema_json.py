"""manifest.json's JSON Schema and its docs page, generated from the TypedDicts of compiler/manifest_schema.py.

The TypedDicts are the one declaration of the manifest; this turns them into docs/manifest.schema.json (JSON
Schema 2020-12) and docs/manifest.md (the same, field by field). After changing manifest_schema.py:

    .venv/bin/python -m tests.manifest_schema_json --write

How a TypedDict reads: an object with exactly its keys (additionalProperties false), each required unless it is
`NotRequired` or its class is `total=False`; its docstring describes the object, a field's trailing comment
the field. tests/unit/test_manifest_schema_json.py checks that the committed files are what this writes, and
validates every recorded manifest against the schema.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import sys
import tokenize
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, Union

from edgekiln.compiler import manifest_schema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "docs" / "manifest.schema.json"
PAGE_FILE = ROOT / "docs" / "manifest.md"
ROOT_TYPE = manifest_schema.Manifest
JSON_TYPES: dict[object, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                                 type(None): "null"}


@dataclass(frozen=True)
class Declared:
    """A TypedDict as its source declares it: total or not, its bases, its own fields' comments."""

    total: bool
    bases: tuple[str, ...]
    own: dict[str, str]  # field -> its trailing comment ("" without one)
    not_required: frozenset[str]


def declarations() -> dict[str, Declared]:
    """Every class of manifest_schema.py, read from its source: at run time a TypedDict forgets which of its
    keys it declared itself, and (before Python 3.12, with postponed annotations) which are NotRequired."""
    source = inspect.getsource(manifest_schema)
    comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            fields = [f for f in node.body if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)]
            total = not any(k.arg == "total" and isinstance(k.value, ast.Constant) and k.value.value is False
                            for k in node.keywords)
            found[node.name] = Declared(
                total, tuple(ast.unparse(b) for b in node.bases),
                {f.target.id: comments.get(f.end_lineno or f.lineno, "") for f in fields},  # type: ignore[union-attr]
                frozenset(f.target.id for f in fields  # type: ignore[union-attr]
                          if ast.unparse(f.annotation).startswith("NotRequired[")))
    return found


def _declaring(name: str, field: str, found: dict[str, Declared]) -> Declared:
    """The class among `name` and its bases that declares `field` itself."""
    declared = found[name]
    if field in declared.own:
        return declared
    return next(_declaring(base, field, found) for base in declared.bases
                if base in found and _has(base, field, found))


def _has(name: str, field: str, found: dict[str, Declared]) -> bool:
    return field in found[name].own or any(b in found and _has(b, field, found) for b in found[name].bases)


def type_schema(tp: Any, refs: list[type]) -> dict[str, Any]:
    """A Python annotation as JSON Schema; a TypedDict becomes a $ref (appended to `refs` to be defined)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is NotRequired:
        return type_schema(args[0], refs)
    if tp in JSON_TYPES:
        return {"type": JSON_TYPES[tp]}
    if tp is object:
        return {}
    if origin in (Union, types.UnionType):
        parts = [type_schema(a, refs) for a in args]
        if all(list(p) == ["type"] for p in parts):
            return {"type": [p["type"] for p in parts]}
        return {"anyOf": parts}
    if origin is list:
        return {"type": "array", "items": type_schema(args[0], refs)}
    if origin is dict:
        values = type_schema(args[1], refs)
        return {"type": "object", **({"additionalProperties": values} if values else {})}
    if typing.is_typeddict(tp):
        refs.append(tp)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    raise TypeError(f"manifest_schema: no JSON Schema for the annotation {tp!r}")


def object_schema(cls: type, found: dict[str, Declared], refs: list[type]) -> dict[str, Any]:
    """One TypedDict as a JSON Schema object: its keys, which are required, and what each one is."""
    properties, required = {}, []
    for field, tp in typing.get_type_hints(cls, include_extras=True).items():
        declared = _declaring(cls.__name__, field, found)
        comment = declared.own[field]
        properties[field] = {**type_schema(tp, refs), **({"description": comment} if comment else {})}
        if declared.total and field not in declared.not_required:
            required.append(field)
    doc = " ".join(inspect.cleandoc(cls.__doc__ or "").split())
    return {"type": "object", **({"description": doc} if doc else {}),
            "properties": properties, "required": required, "additionalProperties": False}


def schema() -> dict[str, Any]:
    """The manifest's JSON Schema: the Manifest object, each TypedDict it reaches a $defs entry, in the order
    they are first reached (breadth first: the sections, then what they hold)."""
    found, refs = declarations(), [ROOT_TYPE]
    defs: dict[str, Any] = {}
    while refs:
        cls = refs.pop(0)
        if cls.__name__ not in defs:
            defs[cls.__name__] = object_schema(cls, found, refs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "edgekiln manifest.json, schema_version " + str(manifest_schema.SCHEMA_VERSION),
            "description": "Generated from compiler/manifest_schema.py by `python -m tests.manifest_schema_json "
                           "--write`; do not edit.",
            "$ref": f"#/$defs/{ROOT_TYPE.__name__}", "$defs": defs}


def schema_text() -> str:
    return json.dumps(schema(), indent=1) + "\n"


def main(argv: list[str]) -> int:
    from tests.manifest_schema_page import page_text

    if argv != ["--write"]:
        print(__doc__)
        return 2
    SCHEMA_FILE.write_text(schema_text())
    PAGE_FILE.write_text(page_text(schema()))
    print(f"wrote {SCHEMA_FILE.relative_to(ROOT)} and {PAGE_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

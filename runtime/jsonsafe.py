"""JSON without inf or NaN, for every file and `--json` output edgekiln writes (stdlib only).

JSON has no infinity and no NaN (Python's json writes `Infinity`/`NaN` tokens that strict parsers refuse,
or raises with allow_nan=False). Figures that can be infinite are written as null: an SQNR of an output
reproduced exactly (no noise), a ratio over zero. `dumps` replaces each non-finite float with null and,
when the top level is an object, lists what each replaced value was and what it means under `non_finite`
({"fidelity.per_output[1].sqnr_db": "inf: ..."}), so a reader never has to guess what a null stands for.
NULL_MEANINGS says what null means for the keys that are null by design rather than by replacement.
"""

from __future__ import annotations

import json
import math
from typing import Any, SupportsFloat

# What a replaced value meant, by the key it sat under (the last path component), then in general.
MEANINGS = {
    "sqnr_db": {"inf": "no error: the output equals the reference exactly (SQNR infinite)",
                "-inf": "no signal: the reference output is all zero while the output differs",
                "nan": "undefined: the reference is constant zero and so is the error"},
    "probe_gain_db": {"inf": "keeping this node in float made the output exact (an infinite SQNR gain)"},
    "max_abs_diff": {"inf": "the bundle's tokenizer gave other token ids than at build time (validate from text)"},
}
GENERIC = {"inf": "infinite (a ratio over zero, or an overflow)", "-inf": "minus infinity (an overflow)",
           "nan": "not a number (zero over zero, or an input that was not finite)"}
# Keys that are null by design when a figure is infinite or undefined (the manifest states it once).
NULL_MEANINGS = {
    "sqnr_db": "null: no error to measure (the output equals the reference exactly: SQNR infinite)",
    "per_output[].sqnr_db": "the same, per output",
    "ratio, speedup, *_ratio": "null: undefined (a ratio over zero)",
}


def clean(value: object, path: str = "", found: dict[str, str] | None = None) -> object:
    """A copy of value (dicts, lists, tuples, numbers, numpy scalars) with every non-finite float as None;
    each replacement recorded in `found` as path -> meaning."""
    found = {} if found is None else found
    if isinstance(value, dict):
        return {key: clean(item, f"{path}.{key}" if path else str(key), found) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item, f"{path}[{i}]", found) for i, item in enumerate(value)]
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    number = _as_float(value)
    if number is None:
        return value
    if math.isfinite(number):
        return value if isinstance(value, float) else _plain(value)
    kind = "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
    keys = [part.split("[", 1)[0] for part in path.split(".")][::-1]  # the value's own key, then its parents'
    meanings = next((MEANINGS[k] for k in keys[:2] if k in MEANINGS), GENERIC)
    found[path] = f"{kind}: {meanings.get(kind, GENERIC[kind])}"
    return None


def _as_float(value: object) -> float | None:
    """A float for float-like values (float, numpy floating scalars and 0-d arrays), else None."""
    try:
        return float(value) if isinstance(value, SupportsFloat) and not isinstance(value, str) else None
    except (TypeError, ValueError):
        return None


def _plain(value: object) -> object:
    """numpy scalars as Python numbers (json cannot write them)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def dumps(value: object, **options: Any) -> str:
    """Strict JSON of value: non-finite floats as null, listed under `non_finite` in a top-level object."""
    found: dict[str, str] = {}
    cleaned = clean(value, "", found)
    if found and isinstance(cleaned, dict):
        cleaned["non_finite"] = {**cleaned.get("non_finite", {}), **found}
    return json.dumps(cleaned, allow_nan=False, **options)

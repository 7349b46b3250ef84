"""What a report is a view of: a bundle's manifest.json and measurements/*.json, or a sweep's sweep.json.

Read defensively: a section whose data is missing or has another shape is left out, never an error;
only a folder with neither file is one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekiln.compiler.errors import EdgekilnError

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class ReportInputs:
    """The files a page is made from, already parsed; `name` titles the page."""

    name: str
    manifest: dict = field(default_factory=dict)
    measurements: list[dict] = field(default_factory=list)
    sweep: dict | None = None


def read(folder: Path) -> ReportInputs:
    """A bundle (manifest.json, measurements/) or a sweep folder (sweep.json, and its bundle/ if present)."""
    if (folder / "manifest.json").is_file():
        # named "bundle", not by its folder: the build renders it in a staging folder renamed afterwards
        return ReportInputs("bundle", _json(folder / "manifest.json"), read_measurements(folder))
    if (folder / "sweep.json").is_file():
        inner = folder / "bundle"
        chosen = read(inner) if (inner / "manifest.json").is_file() else ReportInputs(folder.name)
        return ReportInputs(folder.resolve().name, chosen.manifest, chosen.measurements, _json(folder / "sweep.json"))
    raise EdgekilnError(f"{folder} is not a bundle or a sweep folder (no manifest.json, no sweep.json)",
                        "pass a directory written by `edgekiln build` or `edgekiln sweep`")


def read_measurements(bundle: Path) -> list[dict]:
    """Every readable measurements/*.json, by device id; a foreign or broken file is skipped."""
    records = []
    for path in sorted((bundle / "measurements").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgekilnError(f"cannot read {path}: {exc}", "rebuild it with edgekiln") from None
    if not isinstance(data, dict):
        raise EdgekilnError(f"{path} is not an edgekiln manifest (a JSON object)", "rebuild it with edgekiln")
    return data


def dig(data: Any, *keys: str | int) -> Any:
    """data[k1][k2]... or None where any step is missing or of another type."""
    for key in keys:
        if isinstance(key, int):
            data = data[key] if isinstance(data, list) and -len(data) <= key < len(data) else None
        else:
            data = data.get(key) if isinstance(data, dict) else None
        if data is None:
            return None
    return data


def block(data: Any, *keys: str) -> dict:
    """The dict at data[k1][k2]..., or an empty one where it is missing or not a dict."""
    found = dig(data, *keys)
    return found if isinstance(found, dict) else {}


def number(value: Any) -> float | None:
    """A plottable number, or None (JSON null, text, booleans)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def rows(value: Any) -> list[dict]:
    """The dict entries of a list (anything else: none)."""
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def texts(value: Any) -> list[str]:
    """The strings of a list (anything else: none)."""
    return [t for t in value if isinstance(t, str)] if isinstance(value, list) else []

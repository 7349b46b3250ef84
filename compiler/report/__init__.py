"""`edgekiln report`: one self-contained HTML page per bundle (or sweep folder), a view of its files.

The page is made from manifest.json, measurements/*.json and sweep.json alone, so it can be remade at
any time (after `deploy` adds device figures, say). Each section appears only when its data exists.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgekiln.compiler.report import candidates, devices, headline, layers, precision, pruning, sweep
from edgekiln.compiler.report.inputs import REPORT_FILE, ReportInputs, dig, read
from edgekiln.compiler.report.page import Section, document

# The sections in page order; each returns None when its data is absent.
SECTIONS: tuple[Callable[[ReportInputs], Section | None], ...] = (
    headline.headline, sweep.sweep, candidates.candidates, precision.precision, layers.profile, layers.diagnosis,
    pruning.pruning, devices.devices, devices.warnings)


def render(inputs: ReportInputs) -> str:
    """The whole page as text."""
    m = inputs.manifest
    title = f"{dig(m, 'source', 'file_name') or inputs.name} for {dig(m, 'target', 'name') or 'its target'}"
    if inputs.sweep is not None:
        title = f"Sweep {inputs.name}: {title}"
    subtitle = (f"{dig(m, 'model', 'file') or 'model'} built {dig(m, 'created_utc') or '?'} by edgekiln "
                f"{dig(m, 'compiler', 'version') or '?'}; {dig(m, 'target', 'description') or ''}")
    return document(title, subtitle, [s for s in (section(inputs) for section in SECTIONS) if s is not None])


def write(folder: Path, output: Path | None = None) -> Path:
    """Render the report of `folder` into `output` (default FOLDER/report.html), replaced atomically."""
    target = output or folder / REPORT_FILE
    text = render(read(folder))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)  # readers see old or new, never half
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


__all__ = ["REPORT_FILE", "ReportInputs", "read", "render", "write"]

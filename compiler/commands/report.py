"""`edgekiln report BUNDLE [-o FILE]`: (re)make the bundle's report.html from its files alone."""

from __future__ import annotations

from pathlib import Path

from edgekiln.compiler.console import console
from edgekiln.compiler.paths import existing, writable_file


def report_command(folder: Path, output: Path | None) -> Path:
    """Write the report of a bundle or sweep folder; print where it went and how big it is."""
    from edgekiln.compiler import report

    existing(folder, "bundle", "dir")
    if output is not None:
        writable_file(output, "report")
        output.parent.mkdir(parents=True, exist_ok=True)
    written = report.write(folder, output)
    console.print(f"report: {written} ({written.stat().st_size:,} bytes; open it in a browser, nothing is fetched)")
    return written

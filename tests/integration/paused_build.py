"""`edgekiln build ARGS`, paused where a fault test strikes (run as a script by tests/integration/faults.py).

    python paused_build.py WHERE MARKER ARGS...

WHERE is the start of a stage's progress line ("Converting", "Writing", ...) or "swap": the bundle is written
in its staging folder and not yet renamed in. Paused, the build writes MARKER and waits until the test removes
it; meanwhile the test breaks something for real (a signal, a remount, a removed folder). Nothing is replaced:
the build runs the real CLI, and a signal lands where the build stands.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgekiln.compiler import bundle, summary
from edgekiln.compiler.cli import app


def pause(marker: Path) -> None:
    marker.write_text(str(os.getpid()))
    while marker.exists():
        time.sleep(0.05)


def pause_before_swap(marker: Path) -> None:
    swap_in = bundle._swap_in

    def paused(staging: Path, output: Path) -> None:
        pause(marker)
        swap_in(staging, output)

    bundle._swap_in = paused  # type: ignore[assignment]


def pause_at_stage(stage: str, marker: Path) -> None:
    display = summary.progress_display

    @contextmanager
    def paused() -> Iterator[Callable[[str], None]]:
        with display() as advance:

            def step(name: str) -> None:
                advance(name)
                if name.startswith(stage):
                    pause(marker)

            yield step

    summary.progress_display = paused  # type: ignore[assignment]


if __name__ == "__main__":
    where, marker, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    (pause_before_swap if where == "swap" else lambda m: pause_at_stage(where, m))(marker)
    app(args=["build", *args], prog_name="edgekiln")

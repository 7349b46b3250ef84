"""`edgekiln targets`: the known target devices, with the anchor error of their latency estimate."""

from __future__ import annotations

from rich.table import Table

from edgekiln.compiler.console import console


def print_targets() -> None:
    from edgekiln import targets

    table = Table(title="edgekiln targets")
    for column in ("name", "arch", "cpu", "RAM MB (budget)", "Python", "tflite interpreter", "estimate error"):
        table.add_column(column, no_wrap=column in ("name", "arch", "Python", "estimate error"))
    for name in targets.names():
        t = targets.load(name)
        table.add_row(t.name, t.arch, t.cpu, f"{t.ram_mb} ({t.ram_budget_mb})", t.python, t.tflite_interpreter,
                      estimate_error(t))
    console.print(table)
    console.print("[dim]estimate error: (estimate - published) / published on each target's anchors "
                  "(XNNPACK README MobileNets; bench/fit_estimate.py)[/dim]")


def estimate_error(t: object) -> str:
    """The targets table's cell: the anchor error of a target's estimate, or why there is none."""
    e = t.estimate  # type: ignore[attr-defined]
    if e is None:
        return "no estimate"
    if not e.anchors:
        return f"no anchor (derived from {e.derived_from})"
    held = [a for a in e.anchors if not a.fitted]
    worst = max(abs(a.error) for a in held) if held else 0.0
    return (f"{e.error_band[0] * 100:+.0f}%..{e.error_band[1] * 100:+.0f}% on {len(e.anchors)} anchors "
            f"({len(held)} held out: max {worst * 100:.0f}%)")

"""`edgekiln targets`: the known target devices, with the cross-validated error band of their latency estimate."""

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
    console.print("[dim]estimate error: leave-one-out (estimate - published) / published over each board's own "
                  "published anchors, each predicted by figures fitted on the others (XNNPACK README MobileNets; "
                  "bench/fit_estimate.py); a board without any: band unknown[/dim]")


def estimate_error(t: object) -> str:
    """The targets table's cell: the number of anchors and the leave-one-out band of a target's estimate, or
    why there is none."""
    e = t.estimate  # type: ignore[attr-defined]
    if e is None:
        return "no estimate"
    if not e.anchors or e.error_band is None:
        derived = f" (derived from {e.derived_from})" if e.derived_from else ""
        return f"0 anchors: band unknown{derived}"
    lo, hi = e.error_band
    bound = f"; {', '.join(e.at_bound)} at bound" if e.at_bound else ""
    return f"{len(e.anchors)} anchors: {lo * 100:+.0f}%..{hi * 100:+.0f}% (leave-one-out){bound}"

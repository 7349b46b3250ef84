"""The profile as a table: `edgekiln profile`, and the top rows in the build summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from edgekiln.compiler.console import console

if TYPE_CHECKING:
    from edgekiln.compiler.manifest_schema import Profile


def adds_up_line(profile: Profile) -> str:
    """'sum of ops 1.06 ms vs whole 1.12 ms (0.95x; within +-20 %)', or says that it does not add up."""
    agree = profile["agreement"]
    verdict = "within" if agree["within"] else "NOT within"
    return (f"sum of ops {profile['sum_ms']:.3f} ms vs whole model {profile['total_ms']:.3f} ms measured "
            f"({agree['ratio']:.2f}x; {verdict} +-{agree['bound']:.0%}); {profile['method']}, "
            f"{profile['threads']} threads")


def print_profile(profile: Profile, title: str, top: int | None = None) -> None:
    """The rows sorted by time; hot rows (together 80 % of the time) marked '*'."""
    estimate = profile.get("estimate")
    table = Table(title=title, show_header=True)
    for header in ("", "op", "layer", "host ms", "share", "MACs", "params", "weights B", "dtype", "fast path"):
        table.add_column(header, justify="right" if header in ("host ms", "share", "MACs", "params", "weights B")
                         else "left")
    if estimate:
        table.add_column(f"{estimate['target']} ms (estimate)", justify="right")
    for op in profile["ops"][:top]:
        cells = ["*" if op.get("hot") else "", op["op"], _short(op["layer"]), f"{op['ms']:.4f}",
                 f"{100 * op['share']:.1f}%", _count(op["macs"]), f"{op['params']:,}", f"{op['weight_bytes']:,}",
                 op["dtype"], _fast(op["fast_path"])]
        if estimate:
            cells.append("-" if op.get("estimate_ms") is None else f"{op['estimate_ms']:.4f}")
        table.add_row(*cells)
    console.print(table)
    shown = f"top {top} of {profile.get('ops_total', len(profile['ops']))} ops; " if top else ""
    console.print(f"{shown}* = the ops that together take 80 % of the time; {adds_up_line(profile)}", markup=False)
    if estimate:
        console.print(f"{estimate['target']} column: the cost model per op ({estimate['threads']} threads), an "
                      f"estimate, not a measurement (sum {estimate['sum_ms']:.3f} ms)", markup=False)


def print_layers(rows: list[dict], title: str, labels: tuple[str, str], top: int = 8) -> None:
    """Each layer's time in two profiles side by side (rows of stage.layers_side_by_side)."""
    keys = [k for k in rows[0] if k.endswith("_ms")] if rows else []
    table = Table(title=title, show_header=True)
    for header in ("layer", f"{labels[0]} ms", f"{labels[1]} ms", "ratio"):
        table.add_column(header, justify="left" if header == "layer" else "right")
    for row in rows[:top]:
        table.add_row(_short(row["layer"]), *(f"{row[k]:.4f}" for k in keys),
                      "-" if row["ratio"] is None else f"{row['ratio']:.2f}x")
    console.print(table)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"  # None: not computed (an ONNX node onnxruntime renamed, say)


def _fast(value: object) -> str:
    if isinstance(value, bool):
        return "XNNPACK" if value else "builtin (slow)"
    return "-" if value is None else str(value)


def _short(text: str, width: int = 44) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."

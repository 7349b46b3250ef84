"""The profile table prints every row the manifest's schema allows, unknown figures included."""

from __future__ import annotations

from edgekiln.compiler.console import console
from edgekiln.compiler.profile import agreement
from edgekiln.compiler.profile.table import print_profile


def test_an_op_whose_macs_are_unknown_prints_a_dash():
    # onnxruntime fuses unnamed nodes into 'fused ' rows that match no source node: macs None (schema: int | None)
    op = {"name": "fused ", "op": "FusedGemm", "layer": "fused ", "ms": 0.007, "share": 1.0, "macs": None,
          "params": 0, "weight_bytes": 0, "dtype": "", "fast_path": "FusedGemm (CPUExecutionProvider)", "hot": True}
    profile = {"method": "prefix-differences", "threads": 1, "total_ms": 0.007, "sum_ms": 0.007,
               "agreement": agreement(0.007, 0.007), "ops": [op], "estimate": None}
    with console.capture() as captured:
        print_profile(profile, "title", top=5)
    row = next(line for line in captured.get().splitlines() if "FusedGemm" in line)
    assert row.split("│")[6].strip() == "-", row

"""Which ops of a .tflite model run in LiteRT's fast CPU kernel library (XNNPACK), measured, not guessed.

LiteRT applies XNNPACK when it creates the interpreter. Every partition the delegate takes becomes one
DELEGATE node in the op details, listing the partition's boundary tensors; the original nodes stay listed.
A node is in the fast path when it lies between some DELEGATE node's inputs and outputs. The rest run on
LiteRT's built-in kernels, and each one of them splits the fast path into more pieces.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from edgekiln.compiler.manifest_schema import CoverageFacts
from edgekiln.compiler.tf_env import quiet_fds

DELEGATE = "DELEGATE"


@dataclass(frozen=True)
class Coverage:
    """nodes: compute nodes of the model; fast: how many XNNPACK runs; pieces: XNNPACK partitions;
    slow_ops: op name -> nodes of that op left to the built-in kernels."""

    nodes: int
    fast: int
    pieces: int
    slow_ops: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> CoverageFacts:
        return {"nodes": self.nodes, "fast_path_nodes": self.fast, "fast_path_pieces": self.pieces,
                "library": "XNNPACK", "outside_fast_path": dict(sorted(self.slow_ops.items()))}


def measure(model_bytes: bytes, threads: int = 1) -> Coverage:
    """Create the interpreter the bundle uses and read how XNNPACK partitioned the graph."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_fds():  # LiteRT announces XNNPACK on fd 2 when it applies it
        interp = Interpreter(model_content=model_bytes, num_threads=threads)
        interp.allocate_tensors()
    return from_ops(interp._get_ops_details())  # noqa: SLF001  (the only API listing delegate partitions)


def from_ops(ops: list[dict]) -> Coverage:
    """Coverage from LiteRT op details (original nodes, then one DELEGATE node per partition)."""
    original = [op for op in ops if op["op_name"] != DELEGATE]
    covered = covered_nodes(ops)
    slow = Counter(op["op_name"] for op in original if op["index"] not in covered)
    pieces = sum(op["op_name"] == DELEGATE for op in ops)
    return Coverage(len(original), len(covered), pieces, dict(slow))


def covered_nodes(ops: list[dict]) -> set[int]:
    """The indices of the original nodes some XNNPACK partition runs."""
    original = [op for op in ops if op["op_name"] != DELEGATE]
    producer = {int(t): op["index"] for op in original for t in op["outputs"]}
    covered: set[int] = set()
    for partition in (op for op in ops if op["op_name"] == DELEGATE):
        boundary = {int(t) for t in partition["inputs"]}
        frontier = [int(t) for t in partition["outputs"]]
        while frontier:
            tensor = frontier.pop()
            node = producer.get(tensor)
            if node is None or tensor in boundary or node in covered:
                continue
            covered.add(node)
            frontier.extend(int(t) for t in ops[node]["inputs"] if t >= 0)
    return covered

"""int8+mixed for ONNX: plain int8 with the outputs of wide-range Concat nodes in int16 and the fewest layers promoted
to 16-bit activations until the criterion holds (the rule: search/mixed_precision.py), one QDQ file.

A layer is promoted by quantizing its output tensors to int16 (quantize_static's per-tensor overrides,
emit/onnx_convert.static `sixteen`): its consumers dequantize int16 instead of int8, the rest of the graph stays
int8. On onnxruntime's CPU kernels no requantization between the segments is needed: each QDQ op dequantizes its
inputs whatever their width, and an op with a 16-bit input or output fuses into no integer kernel, so it runs in
float32 between its Q/DQ (the estimate charges it so: analyze/onnx_stats.py). The candidate records what it kept
apart, what it promoted and why, and every step it measured (CandidateDetails.mixed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgekiln.compiler.diagnose.onnx_diagnosis import NodeError, float_name
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.quality import Quality, describe
from edgekiln.compiler.manifest_schema import CandidateDetails, MixedPrecision
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.mixed_precision import PROBES, Apart, Node, Probe, concats_apart, ranked, stepped
from edgekiln.compiler.search.variants import Variant, failure_note

NOTE = ("int8, the named layers' activations int16: each promoted op runs in float32 between 16-bit Q/DQ "
        "(onnxruntime fuses no 16-bit group)")
Quantizer = Callable[[tuple[str, ...]], bytes]  # the activation tensors quantized to int16 -> the QDQ model


@dataclass(frozen=True)
class Plain:
    """What int8+mixed starts from: the int8 model it refines (name, quality), plain int8's bytes and per-node
    diagnosis, the prepared float graph's nodes and their calibrated (min, max) ranges."""

    name: str
    quality: Quality
    model: bytes
    errors: list[NodeError]
    nodes: list[Node]
    ranges: dict[str, tuple[float, float]]


def build(candidate: Variant, plain: Plain, quantize: Quantizer, judge: Callable[[bytes], Quality],
          criterion: Criterion, facts: CandidateDetails) -> Candidate:
    """The candidate, or not built: where plain int8 meets the criterion, or neither a Concat kept apart nor any
    probed layer gained anything."""
    if criterion.meets(plain.quality):
        return Candidate(candidate, None, (f"not needed: {plain.name} meets the criterion "
                                           f"({describe(plain.quality, criterion.by_cosine)})",))
    apart = concats_apart(plain.nodes, plain.ranges)
    joined = tuple(t for a in apart for t in a.outputs)
    base = judge(quantize(joined)) if joined else plain.quality
    if criterion.meets(base):
        return _made(candidate, quantize(joined), base, apart, [], {}, [((), base)], criterion, plain, facts)
    tensors = promotable(plain.model)
    probes, failures = [], []
    for error in _suspects(plain.errors, tensors):
        try:
            alone = judge(quantize((*joined, *tensors[error.name])))
        except Exception as exc:  # noqa: BLE001  (a layer the quantizer cannot widen is no layer to promote)
            failures.append(failure_note(exc))
            continue
        probes.append(Probe(error.name, error.op, _reason(error), _sqnr(alone) - _sqnr(base)))
    helpful, gains = ranked(probes), {p.layer: round(float(p.gain_db), 2) for p in probes}
    if not helpful:
        why = f"promoting any of {len(probes)} probed layer(s) to int16 was no more faithful than {plain.name}"
        return Candidate(candidate, None, (why, *failures[:1]))
    steps = stepped(helpful, lambda layers: judge(quantize(_tensors_of(layers, tensors, joined))), criterion.meets)
    promoted, quality = steps[-1]
    model = quantize(_tensors_of(promoted, tensors, joined))
    chosen = [p for p in helpful if p.layer in promoted]
    return _made(candidate, model, quality, apart, chosen, gains, steps, criterion, plain, facts)


def promotable(int8_model: bytes) -> dict[str, tuple[str, ...]]:
    """Each compute node of a QDQ model -> its output tensors that are quantized (float names): what promoting
    it widens to int16."""
    import onnx

    graph = onnx.load_from_string(int8_model).graph
    quantized = {float_name(n.input[0]) for n in graph.node if n.op_type == "QuantizeLinear"}
    layers = {}
    for node in graph.node:
        outs = tuple(float_name(o) for o in node.output if float_name(o) in quantized)
        if node.name and node.op_type not in ("QuantizeLinear", "DequantizeLinear") and outs:
            layers[node.name] = outs
    return layers


def _suspects(errors: list[NodeError], tensors: dict[str, tuple[str, ...]]) -> list[NodeError]:
    """The layers to probe: those producing a graph output, then those the diagnosis blames, worst first."""
    order = [e for e in errors if e.output] + [e for e in errors if e.added > 0 and not e.output]
    unique = {e.name: e for e in reversed(order) if e.name in tensors}
    return [unique[name] for name in dict.fromkeys(e.name for e in order) if name in unique][:PROBES]


def _reason(error: NodeError) -> str:
    own = "bit-exact" if error.sqnr_db is None else f"SQNR {error.sqnr_db:.1f} dB"
    blamed = f"adds {error.share:.0%} of the int8 error ({own} at its output)"
    return f"produces a graph output; {blamed}" if error.output else blamed


def _tensors_of(layers: tuple[str, ...], tensors: dict[str, tuple[str, ...]],
                joined: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*joined, *(t for layer in layers for t in tensors[layer])]))


def _made(candidate: Variant, model: bytes, quality: Quality, apart: list[Apart], promoted: list[Probe],
          gains: dict[str, float], steps: list[tuple[tuple[str, ...], Quality]], criterion: Criterion, plain: Plain,
          facts: CandidateDetails) -> Candidate:
    mixed: MixedPrecision = {
        "concats_apart": [a.to_dict() for a in apart], "promoted": [p.to_dict() for p in promoted],
        "probe_gain_db": gains, "steps": [{"promoted": len(layers), **q.to_dict()} for layers, q in steps],
        "meets_criterion": criterion.meets(quality)}
    gained = _sqnr(quality) - _sqnr(plain.quality)
    notes = [f"{len(promoted)} layer(s) promoted to int16 activations (+{gained:.1f} dB over {plain.name})"]
    if apart:
        notes.append(f"{len(apart)} Concat output(s) of very different ranges in int16: each input keeps its own scale")
    widened = f"{facts.get('activation_type', 'int8')}+int16"  # never timed as a u8s8 twin (_with_twin)
    return Candidate(candidate, model, (*notes, NOTE), {**facts, "activation_type": widened, "mixed": mixed})


def _sqnr(quality: Quality) -> float:
    return float("inf") if quality.sqnr_db is None else quality.sqnr_db

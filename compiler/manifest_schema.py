"""manifest.json, schema_version 1, as types: the one declaration of its sections and keys, and the one reader.

The writer (manifest.py, pruning_gain.py, profile/) builds these, and every reader (the build summary,
`inspect`, the report, the sweep) takes a `Manifest` from `read` or from the build, so mypy checks each key
and its type on both sides. A key that not every build writes is `NotRequired`; a figure JSON cannot hold
(an infinite ratio, an exact SQNR) is null, hence `| None` (runtime/jsonsafe.py says which).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NotRequired, TypedDict, cast

from edgekiln.compiler.errors import EdgekilnError

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
REQUIRED_KEYS = ("schema_version", "compiler", "created_utc", "recipe", "target", "source", "model",
                 "baseline", "size", "pruning", "quantization", "fidelity", "latency", "golden")

JsonObject = dict[str, object]  # a section's detail that readers show as is, never index into


WHERE = ("host", "device", "emulator", "estimate", "static")  # Provenance.where: measured here, on a board,
# under ARM emulation, the target's cost model, or counted from the model file


class Provenance(TypedDict):
    """How a figure was made: the one vocabulary every figure section carries as `how`."""

    where: str  # one of WHERE: host, device, emulator, estimate (the cost model) or static (counted from the file)
    statistic: str  # what the figure is, in words ("median of 7 interleaved round p50s")
    runs: int | None  # timed runs in all (null: not timed)
    rounds: int | None  # the rounds the runs came in (null: not timed)
    threads: int | None  # the interpreter's threads (null: not run)
    samples: int | None  # how many samples (null: no samples)
    data: str | None  # which set: held-back, calibration, evaluation, golden (null: no samples)
    unknown: str | None  # what could not be computed and why, the figure then null or a bound (null: all computed)


def provenance(where: str, statistic: str, *, runs: int | None = None, rounds: int | None = None,
               threads: int | None = None, samples: int | None = None, data: str | None = None,
               unknown: str | None = None) -> Provenance:
    """A figure's `how`, checked against the vocabulary's places."""
    assert where in WHERE, f"{where!r} is not one of {WHERE}"
    return {"where": where, "statistic": statistic, "runs": runs, "rounds": rounds, "threads": threads,
            "samples": samples, "data": data, "unknown": unknown}


class FixedInput(TypedDict):
    name: str
    declared: str
    shape: list[int]
    origin: str


class Source(TypedDict):
    """The model given to the build."""

    file_name: str
    format: str  # keras, h5, saved_model or onnx
    sha256: str
    bytes: int
    params: int
    macs: int | None  # None: not computed (how.unknown says why)
    fixed_inputs: NotRequired[list[FixedInput]]
    shape_nodes_folded: NotRequired[int]
    how: NotRequired[Provenance]  # of macs


class Layout(TypedDict):
    """How the converter moved a tensor's axes (emit/tflite_from_onnx.py, e.g. onnx2tf's NCHW -> NHWC): the
    source's and the compiled model's axis letters, compiled = source.transpose(perm); the runtime undoes it."""

    source: str
    compiled: str
    perm: list[int]
    source_shape: list[int]


class TensorEntry(TypedDict):
    """A model input or output; scale and zero_point quantize an int8 one (real = scale * (q - zero_point))."""

    name: str
    shape: list[int]
    dtype: str
    scale: float
    zero_point: int
    layout: NotRequired[Layout]


class Model(TypedDict):
    """The shipped model file, checked by its sha256 on the device."""

    file: str  # model.tflite or model.onnx
    format: str  # tflite or onnx
    sha256: str
    bytes: int
    params: int
    macs: int | None  # None: not computed (how.unknown says why)
    ops: dict[str, int]  # op type -> how many
    inputs: list[TensorEntry]
    outputs: list[TensorEntry]
    how: NotRequired[Provenance]  # of macs


class RuntimeTiming(TypedDict):
    """One compiled batch timed by the bundle runtime's benchmark (runtime/model.py Model.benchmark): its
    interpreter, threads, first inference and steady state over `runs`, in ms. The host's figure (HostLatency),
    a device's (DeviceEntry) and `python -m runtime bench --json` (runtime_json.Benchmark) all extend it."""

    runtime: str
    runtime_version: str
    threads: int | None
    init_ms: float
    first_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int


class HostLatency(RuntimeTiming):
    """A latency measured on this host (the manifest's latency.host): where, then the runtime's benchmark of one
    compiled batch (runtime/model.py Model.benchmark) without its peak memory, the compiler's own here."""

    measured_on: str
    cpu: str
    machine: str
    isa: list[str]
    target_threads: NotRequired[int]  # in the manifest's latency.host: the target's thread count
    how: NotRequired[Provenance]  # absent in bundles built before it was recorded


class TargetEstimate(TypedDict):
    """The target's cost model (device/estimate.py): always `method: estimate`, with its basis and band."""

    method: str  # always "estimate"
    model: str
    p50_ms: float  # the estimated latency on the target
    low_ms: float | None  # the band's low end, from the leave-one-out errors on the board's anchors (null: none)
    high_ms: float | None  # the band's high end, as low_ms
    threads: int
    basis: str
    breakdown_ms: dict[str, float]
    error_band: list[float] | None  # the relative errors the band rests on (null: the board has no anchor)
    band: str  # how the band was made, in words ("no published figure for this board: band unknown")
    anchors: int  # how many published figures of this board the fit has
    ratio_error: float | None  # cross-validated error of an int8 / float32 ratio (null: unknown)
    at_bound: list[str]  # figures the fit left at a bound of its range
    fitted_on: list[str]
    held_out: list[str]
    sources: list[str]
    per_op_basis: dict[str, str]
    lower_bound: NotRequired[bool]  # some ops' MACs or bytes are unknown: p50/low/high are lower bounds
    how: NotRequired[Provenance]


class PruningLatency(TypedDict):
    unpruned_p50_ms: float
    p50_ms: float
    speedup: float | None
    latency_ratio: float | None
    macs_ratio: float | None


class DeviceFacts(TypedDict):
    """A device as its agent read it (deploy/agent.py; None: not readable there, or not reported)."""

    board: str | None
    cpu: str | None
    cores: int | None
    machine: str | None
    kernel: str | None
    os: str | None
    python: str | None


class DeviceEntry(DeviceFacts, RuntimeTiming):
    """One device's figures in latency.device (`build --device`, deploy/records.manifest_entry): which device,
    when, what it is, the bundle runtime's benchmark there (runtime_json.Benchmark, without the machine and
    Python) and whether the bundle validated there."""

    device: str
    destination: str
    measured_on: str
    measured_utc: str
    peak_rss_mb: float
    validated: bool
    how: NotRequired[Provenance]


class Latency(TypedDict):
    """The shipped model's latency: measured on this host, estimated for the target, measured on devices."""

    host: HostLatency  # measured on the build machine, and labelled so
    speedup_vs_baseline: float | None  # the float32 baseline's host p50 / the shipped model's
    target_estimate: TargetEstimate | None  # the target's cost model (null: none could be made)
    device: list[DeviceEntry]  # `build --device` figures, one per device
    pruning: NotRequired[PruningLatency]


class OutputFidelity(TypedDict):
    """One output against its reference: its kind (class, embedding, values: evaluate/output_kinds.py) and the
    measure that judges it, SQNR (None: exact), the largest |difference|, and with a vector axis top-1
    agreement and the cosines; `name` when the outputs were named. The measure's 95 % interval: `interval`
    (top-1 agreement of a class output, from its `flips`; SQNR of values) or `intervals` (an embedding's cosine
    mean and 5th percentile)."""

    name: NotRequired[str]
    kind: NotRequired[str]
    sqnr_db: float | None
    max_abs_diff: float
    top1_agreement: NotRequired[float]
    cosine_mean: NotRequired[float]
    cosine_p5: NotRequired[float]
    measure: NotRequired[str]
    flips: NotRequired[int]
    interval: NotRequired[list[float]]
    intervals: NotRequired[dict[str, list[float]]]


class Fidelity(TypedDict):
    """A model's fidelity to the reference: each figure the worst output's (see fidelity), the samples, and
    every output's own figures; `judged_on` says so for a model of several outputs."""

    sqnr_db: float | None
    max_abs_diff: float
    top1_agreement: NotRequired[float]
    flips: NotRequired[int]
    cosine_mean: NotRequired[float]
    cosine_p5: NotRequired[float]
    values_sqnr_db: NotRequired[float | None]
    intervals: NotRequired[dict[str, list[float]]]
    judged_on: NotRequired[str]
    samples: int
    samples_from: NotRequired[str]  # which samples judged (data.CROSS_FITTED, EVALUATION, NOT_HELD_BACK)
    per_output: list[OutputFidelity]
    how: NotRequired[Provenance]


class Baseline(TypedDict):
    format: str
    quantization: str
    bytes: int
    latency: HostLatency
    fidelity: Fidelity
    target_estimate: TargetEstimate | None
    accuracy: NotRequired[float]


class Size(TypedDict):
    """File sizes in bytes."""

    source_bytes: int  # the model given to the build
    baseline_bytes: int  # the float32 baseline
    model_bytes: int  # the shipped model
    ratio: float | None  # model_bytes / baseline_bytes
    unpruned_model_bytes: NotRequired[int]
    pruning_ratio: NotRequired[float]


class Accuracy(TypedDict):
    metric: str
    output: str
    samples: int
    reference: float
    baseline: float
    compiled: float
    drop: float
    budget: float
    within_budget: bool
    how: NotRequired[Provenance]


class EmulatedStanding(TypedDict):
    """Whether the target's emulated estimate ranks the candidates (emulate/cycles.standing): only where both its
    cross-validated errors are below the cost model's (read from the target file), else a cross-check."""

    decides: bool
    why: str


class EmulatedCount(TypedDict):
    """One warm invoke's executed instructions on the target's emulated core (build --emulate-witness,
    search/emulated.py): a count, not a timing."""

    board: str
    core: str
    runtime: str
    label: str  # "executed instructions on an emulated Cortex-A72; not a timing"
    instructions: int
    by_class: dict[str, int]  # int_simd_mac, float_simd, simd_other, load_store, branch, other
    estimate_ms: float | None  # the count through the target's per-class cycle costs ([emulated]); None: none


class EvidenceEntry(TypedDict, total=False):
    """An Evidence as the manifest's quantization.evidence and a sweep's summary write it (Evidence.to_dict);
    `device` only for device timings, `host_would_choose` added by the search (select.py)."""

    kind: str
    target: str
    margin: float
    margin_basis: str
    label: str
    warning: str | None
    device: str
    host_would_choose: str | None
    emulated: EmulatedStanding  # only when the candidates were counted (build --emulate-witness)


class CandidateRow(TypedDict, total=False):
    """One row of the candidate table (search/candidate.Candidate.to_row; read back by Candidate.from_row)."""

    name: str
    format: str
    quantize: str
    bytes: int
    p50_ms: float | None
    runs: int
    estimate_ms: float | None
    device_p50_ms: float | None
    sqnr_db: float | None
    agreement: float | None
    cosine_mean: float | None
    cosine_p5: float | None
    accuracy: float | None
    accuracy_drop: float | None
    pieces: int | None
    notes: list[str]
    samples: int
    flips: int
    values_sqnr_db: float | None
    kinds: list[str]
    intervals: dict[str, list[float]]
    verdict: str
    short: str
    emulated: EmulatedCount  # only with build --emulate-witness


class RaceMethod(TypedDict):
    """How the device timed the candidates (the manifest's quantization.timing.device): where, with which
    interpreter and threads, how many rounds of how many runs, and the method in words."""

    device: str
    device_id: str
    cpu: str | None
    machine: str | None
    runtime: str
    threads: int | None
    rounds: int | None
    runs_per_round: int | None
    round_ms: float | None
    method: str
    how: NotRequired[Provenance]


class Timing(TypedDict, total=False):
    """How the candidates were timed: on this host in interleaved rounds, and with `build --device` on the
    device too (`device`)."""

    measured_on: str
    threads: int
    rounds: int
    runs_per_candidate: dict[str, int]
    method: str
    how: Provenance
    device: RaceMethod


class OutputKindNote(TypedDict):
    """One output's kind (evaluate/output_kinds.py) and what decided it: --output-kind, --embedding,
    "graph: <the final Softmax / Sigmoid>" or "data: <what the source's outputs show>"."""

    name: str
    kind: str
    decided_by: str


class DataNote(TypedDict):
    """Which samples shaped the candidates and which judged them (the manifest's quantization.data)."""

    calibration_samples: int
    tuning_samples: int
    judging_samples: int
    judged_by: str  # data.CROSS_FITTED, EVALUATION or NOT_HELD_BACK
    folds: int      # cross-fitting folds (0: not cross-fitted)
    tuned_on: str
    judged_on: str
    note: str


class Formats(TypedDict, total=False):
    compared: list[str]
    note: str
    left_out: dict[str, str]
    failed: dict[str, str]


class CoverageFacts(TypedDict):
    """Which ops of a .tflite model run in XNNPACK (analyze/coverage.Coverage), as a candidate's details and the
    diagnosis record it."""

    nodes: int
    fast_path_nodes: int
    fast_path_pieces: int
    library: str
    outside_fast_path: dict[str, int]  # op name -> nodes of that op on the built-in kernels, by op name


class LayerFacts(TypedDict):
    """One layer's int8 error in the TFLite diagnosis (diagnose/layer_error.LayerError; rounded to 4 decimals)."""

    layer: str
    op: str
    tensors: list[str]
    rmse_over_scale: float
    sqnr_db: float | None
    channel_nsr: float
    share: float


class NodeFacts(TypedDict):
    """One node's int8 error in the ONNX diagnosis (diagnose/onnx_diagnosis.NodeError)."""

    name: str
    op: str
    sqnr_db: float | None
    share: float
    layer: NotRequired[str]  # the Keras layers behind the node, when tf2onnx made the file from a Keras model


class Diagnosis(TypedDict, total=False):
    """Why plain int8 lost fidelity (diagnose/): of what and how, the causes in words, and the worst layers with
    the fast path's coverage (TFLite; `note`: why layers are missing) or the worst nodes (ONNX). The search
    adds the `format` diagnosed (select.py); without an int8 candidate only `of` (None) and the `note`."""

    of: str | None
    method: str
    samples: int
    layers: list[LayerFacts]
    nodes: list[NodeFacts]
    coverage: CoverageFacts
    causes: list[str]
    note: str
    format: str


class RewriteFacts(TypedDict):
    """The Keras rewrites (rewrite/__init__.Rewritten) as a candidate's details and `explain` record them."""

    applied: list[str]
    not_applied: list[str]
    exact_passes_max_rel_diff: float
    dropped: NotRequired[str]


class FloatFallback(TypedDict):
    """What a TFLite int8+fallback candidate keeps in float (search/tflite_builder.py): the ops outside the
    fast path and why, the worst layers and why, and (int8+fallback+layers) the steps tried until the
    criterion held."""

    float_ops: dict[str, str]
    float_layers: list[JsonObject]
    steps: NotRequired[list[dict[str, float]]]  # float_layers and the quality figures (Quality.to_dict) of each
    meets_criterion: NotRequired[bool]


class PromotedLayer(TypedDict):
    """A layer an int8+mixed candidate promoted to 16-bit activations: what the int8 diagnosis said of it, and
    the SQNR promoting it alone gained (dB, measured on the tuning samples)."""

    layer: str
    op: str
    reason: str
    gain_db: float


class MixedPrecision(TypedDict):
    """How an int8+mixed candidate was made (search/onnx_mixed.py): the Concat nodes whose inputs keep their own
    scales (outputs in int16), the layers promoted to int16 activations, what each probe gained, the steps tried
    (promoted count and Quality.to_dict figures) and whether the last met the criterion."""

    concats_apart: list[dict[str, str]]
    promoted: list[PromotedLayer]
    probe_gain_db: dict[str, float]
    steps: list[dict[str, float]]
    meets_criterion: bool
class AdaroundFacts(TypedDict):
    """How int8+adaround learned its rounding (search/tflite_builder.py, emit/tflite_adaround.py): the per-layer
    step cap, the calibration samples optimised on and held back, the seconds it took, how many integer weights
    moved (each by one step) and each weighted layer's outcome (`LayerRounding.to_dict`: its output error as a
    share of nearest rounding's, on the optimised and the held-back samples, or why it kept nearest)."""

    iterations: int
    samples: int
    held_back: int
    seconds: float
    weights_changed: int
    layers: list[JsonObject]


class FastPathFacts(TypedDict):
    """How an int8+fastpath candidate was made (search/onnx2tf_builder.py, graph/onnx_fast_path.py): how many of
    each hard-swish / hard-sigmoid spelling were respelled, the XNNPACK pieces of plain int8 (before) and of this
    model (after), and the largest output difference of the respelled float graph from the source's on the calibration
    samples, as a share of the output's largest magnitude."""

    rewritten: dict[str, int]
    pieces_before: int | None
    pieces_after: int | None
    max_relative_diff: float
    samples: int


class OpsetFacts(TypedDict):
    """How static int8 of an ONNX model below opset 13 was made (emit/onnx_opset.py): its `source` opset, the
    opset `quantized`, its weights `per-channel` (opset raised) or `per-tensor` (not raised), and why."""

    source: int
    quantized: int
    weights: str
    why: str


class CandidateDetails(TypedDict, total=False):
    """How a candidate was made, as its builder (search/) records it: the converter, how it stores numbers, its
    calibration and the trials that chose it, the Keras rewrites, the transformer fusion, what stays in float,
    and its fast-path coverage (TFLite; None: not measured). The chosen one's are the quantization section's
    `details` (without the coverage), and the section repeats them at its top level."""

    converter: str
    format: str
    weight_type: str
    activation_type: str
    calibration: str
    calibration_trials: dict[str, dict[str, float]]
    rewrites: RewriteFacts
    fusion: JsonObject
    contrib_ops: list[str]
    nodes_excluded: list[str]
    excluded_error_share: float
    probe_gain_db: dict[str, float]
    kept_in_float: list[JsonObject]
    fallback: FloatFallback
    mixed: MixedPrecision
    adaround: AdaroundFacts
    fast_path: FastPathFacts
    opset: OpsetFacts
    qat: JsonObject
    coverage: CoverageFacts | None


class Quantization(CandidateDetails, total=False):
    """The quantization section: the shipped mode and, with a candidate search, the whole table and the
    decision (search/quantization_block.py), with the chosen candidate's details spread in."""

    mode: str
    per_channel: bool
    io_dtype: str
    calibration_samples: int
    calibration_method: str | None
    float_ops: list[str]
    requested: str
    variant: str
    criterion: str
    reason: str
    yardstick: str
    candidates: list[CandidateRow]
    evidence: EvidenceEntry
    timing: Timing
    formats: Formats
    data: DataNote
    output_kinds: list[OutputKindNote]
    not_built: dict[str, str]
    refused_by_target: dict[str, str]
    failed: dict[str, str]
    no_int8: str  # no int8 candidate could be built (each failed): the first cause, what ships, what to try
    diagnosis: Diagnosis
    details: CandidateDetails


class PairedDrop(TypedDict):
    samples: int
    lost: int
    gained: int
    drop: float
    interval: list[float]
    upper_bound: float


class PruningAccuracy(TypedDict):
    """The judging metric on the source, the pruned model before and after recovery, and the paired drop
    (None for a single-valued output)."""

    metric: str
    reference: float
    before_recovery: float
    after_recovery: float
    samples: int
    paired: PairedDrop | None


class PrunedGroup(TypedDict):
    layers: list[str]
    channels_before: int
    channels_after: int


class BlockedGroup(TypedDict):
    layers: list[str]
    reasons: list[str]


class MeasuredGain(TypedDict):
    """Pruning's measured effect (pruning_gain.py): the pruned bundle beside the unpruned model compiled as the
    shipped variant, timed side by side."""

    compiled_as: str
    shipped_as: str
    compiled_as_because: NotRequired[str]
    format: str
    threads: int
    model_bytes: int
    unpruned_model_bytes: int
    size_ratio: float
    macs: int | None  # None: unknown (the model's how.unknown says why)
    unpruned_macs: int | None
    macs_ratio: float | None
    p50_ms: float
    unpruned_p50_ms: float
    latency_ratio: float
    speedup: float
    per_layer_ms: list[JsonObject]
    how: NotRequired[Provenance]  # of the two p50s


class BudgetSplit(TypedDict):
    max_drop: float
    pruning_budget: float | None  # the search's budget (null: an encoder search judged by floors alone)
    reserved_for_quantization: float
    pruning_drop: float
    quantization_drop: float
    total_drop: float
    unused: float
    samples: int
    note: NotRequired[str]


class Recovery(TypedDict, total=False):
    """How the pruned model won accuracy back: fine-tuning, distillation or least squares (`method`); for filters
    as prune/driver.RecoveryFacts, for heads and blocks as prune/encoder_*."""

    method: str
    reason: str  # why nothing was recovered (nothing was removed)
    what: str
    samples: int
    seconds: float
    metric: str  # the judging metric of score_before / score_after
    score_before: float  # the pruned model before recovery
    score_after: float  # after recovery
    used: bool  # false: recovery made the model worse and its weights were not kept (`refused` says so)
    refused: str
    output_cosine_before: float
    output_cosine_after: float
    layers: list[JsonObject]
    steps: list[JsonObject]


class LayerDrop(TypedDict, total=False):
    """Encoder blocks dropped from the end (prune/encoder_*; kind `encoder layers`)."""

    kind: str
    count: int
    criterion: str
    layers_before: int
    layers_after: int
    params_before: int
    params_after: int
    blocks: list[JsonObject]
    recovery: Recovery


class HeadLayer(TypedDict):
    layer: str
    heads_before: int
    heads_after: int
    kept: list[int]
    scores: list[float]


class Probe(TypedDict):
    """One probe of the encoder auto search (prune/encoder_auto.ProbeFacts): the setting, the parameters left, the
    figures the judge measured (those it has), and whether it met the budget (`misses`: which floors it missed)."""

    drop_layers: int
    prune_heads: float
    params: int
    cosine_mean: NotRequired[float]
    cosine_p5: NotRequired[float]
    accuracy: NotRequired[float]
    agreement: NotRequired[float]
    within_budget: bool
    misses: list[str]


class PruningSearch(TypedDict, total=False):
    """The auto search of a pruning setting within the budget: filters (prune/driver.SearchFacts: the sensitivity
    `scan`, the per-group `weights` and the `trials`) or encoder blocks and heads (prune/encoder_auto.SearchFacts:
    the `floors`, the `probes` and the `chosen` one's index)."""

    budget: float | None  # the accuracy drop allowed (null: no labelled data, the floors judge)
    rule: str
    stopped: str  # why the search stopped
    candidates: int  # filters: the plans searched
    channel_multiple: int  # filters: channel counts kept at multiples of this
    weights: dict[str, float]  # filters: group label -> its share of the common ratio
    scan: JsonObject  # filters: each group's accuracy drop when pruned alone (prune/sensitivity.ScanFacts)
    trials: list[JsonObject]  # filters: each probe's ratios, drop, verdict and recovery
    floors: JsonObject  # encoders: the fidelity floors a probe must meet
    reference_accuracy: float | None  # encoders: the source model's accuracy (null: no labels)
    assumption: str
    probes: list[Probe]  # encoders
    chosen: int | None  # encoders: the index of the chosen probe (null: none met the budget)


class Pruning(TypedDict, total=False):
    """The pruning section: what the pruning stage removed (filters, heads or encoder blocks), its recovery,
    and after measurement its measured gain and the accuracy budget's split."""

    kind: str
    criterion: str
    ratio: float | str
    count: int
    groups: list[PrunedGroup]
    per_layer: list[JsonObject]
    blocked: list[BlockedGroup]
    params_before: int
    params_after: int
    judged_on: str
    seconds: float
    layers_before: int
    layers_after: int
    macs_before: int | None
    macs_after: int | None
    macs_ratio: float | None
    recovery: Recovery
    accuracy: PruningAccuracy
    layers: list[HeadLayer]
    layer_drop: LayerDrop
    search: PruningSearch | None
    measured: MeasuredGain | None
    budget_split: BudgetSplit
    distillation: JsonObject  # prune/recovery_facts.Distillation (the schema imports no sub-package: no cycle)
    warnings: list[str]


class ProfileOp(TypedDict, total=False):
    """One op of a profile: measured (index, name, op, ms, share), static facts, the target's estimate."""

    index: int
    name: str
    op: str
    ms: float
    share: float
    layer: str
    macs: int | None
    params: int
    weight_bytes: int
    dtype: str
    estimate_ms: float | None
    fast_path: bool | str | None  # on XNNPACK or not (TFLite); onnxruntime's provider name (ONNX)
    hot: bool


class Agreement(TypedDict):
    """Whether the ops' times add up to the whole model's: sum / whole, within +-bound."""

    ratio: float
    within: bool
    bound: float


class ProfileEstimate(TypedDict):
    method: str
    target: str
    threads: int
    sum_ms: float


class Profile(TypedDict, total=False):
    """A model's per-op profile (compiler/profile/); in the manifest its top rows (`block`), or why there is
    none (`unavailable`). A device's profile adds `measured_on` and `machine`."""

    model: str
    format: str
    method: str | None
    threads: int
    total_ms: float
    sum_ms: float
    agreement: Agreement
    runs: int
    profile_s: float
    estimate: ProfileEstimate | None
    ops_total: int
    ops: list[ProfileOp]
    unavailable: str
    measured_on: str
    machine: str | None
    variant: str  # `profile SOURCE`: which variant of the build was profiled
    how: Provenance


class Golden(TypedDict):
    """The reference inputs and outputs (golden.npz) and the tolerance `python -m runtime validate` allows."""

    file: str  # golden.npz
    samples: int
    atol: float  # absolute tolerance
    rtol: float  # relative tolerance


class MemoryBasis(TypedDict):
    """What the manifest's memory estimate rests on: the runtime's base memory in MB, the interpreter pin, and
    where the base comes from (measured in targets/runtime_memory.toml, or the largest base there)."""

    runtime_base_mb: float
    runtime_interpreter: str
    runtime_base_source: str


class Memory(MemoryBasis):
    estimated_peak_mb: float
    budget_mb: int
    how: NotRequired[Provenance]


class VocabularyCosine(TypedDict):
    """The cosine of the vocabulary-pruned model's pooled sentence embedding to the source's, on these sentences."""

    mean: float
    p5: float
    sentences: int


class Vocabulary(TypedDict):
    """--vocab-from (compiler/vocab_stage.py): the word-embedding rows kept, what chose them, their bytes (float32)
    before and after, the share of the corpus's / unseen sentences' tokens kept, the cosine to the source, and the
    words of the unseen sentences that fell outside the kept vocabulary."""

    corpus: str
    corpus_sentences: int
    rows_before: int
    rows_after: int
    special_tokens: int
    alphabet_tokens: int
    corpus_tokens: int
    filled_to_vocab_size: int
    corpus_tokens_dropped: int
    embedding_bytes_before: int
    embedding_bytes_after: int
    params_before: int
    params_after: int
    coverage_corpus: float
    cosine_corpus: VocabularyCosine
    coverage_unseen: NotRequired[float]
    cosine_unseen: NotRequired[VocabularyCosine]
    words_outside: NotRequired[list[str]]  # evaluation words the cut spells otherwise, first seen first (at most 50)
    words_outside_count: NotRequired[int]  # how many such words in all
    tokenizer: str


class TextSection(TypedDict):
    """A bundle that takes text (compiler/text_bundle.py, read by runtime/text.py): its tokenizer file, the length
    it pads to, each token input's role (ids, mask, types), which output is pooled, how, and whether normalized;
    the golden sentences whose embeddings golden.npz holds (`text_embedding`)."""

    tokenizer: str
    seq_len: int
    pad_id: int
    pad_token: str
    inputs: dict[str, str]
    output: int
    pooling: str
    normalize: bool
    pooling_from: str
    golden_sentences: list[str]
    buckets: NotRequired[list[int]]  # a model taking any length: each sentence runs at the smallest holding it
    latency_by_length: NotRequired[LengthLatency]


class LengthLatency(TypedDict):
    """A model taking any sequence length (compiler/text_bundle.py): its host p50 at the bucket of the evaluation
    sentences' median and longest token counts, and padded to the maximum (seq_len)."""

    median_tokens: int
    median_bucket: int
    median_p50_ms: float
    longest_tokens: int
    longest_bucket: int
    longest_p50_ms: float
    padded_p50_ms: float
    sentences: int
    how: str


class Distillation(TypedDict):
    """build --distill: the student that replaced the source before pruning and quantization (compiler/distill/):
    its width, the teacher's and its params and MACs, its paired drop against the source on the judging samples
    (with the metric and which samples), the budget and probes of auto, and how it was trained."""

    width: float | None
    metric: str
    judged_on: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    macs_ratio: float
    paired: PairedDrop
    budget: float | None
    probes: list[JsonObject]
    training: JsonObject


class Manifest(TypedDict):
    """A bundle's manifest.json: how it was built and what was measured, each figure with how it was made."""

    schema_version: int  # 1; a reader refuses another
    compiler: dict[str, str]  # the versions of edgekiln and of the converters and runtimes it used
    created_utc: str  # when the bundle was built, ISO 8601 UTC
    recipe: JsonObject  # every build option, as a --recipe file takes them (compiler/recipe.py)
    target: JsonObject  # the target device as its TOML declares it (targets/)
    source: Source  # the model given to the build
    model: Model  # the shipped model file
    baseline: Baseline  # the float32 model, measured the same way in the same rounds
    size: Size
    pruning: Pruning | None  # what pruning removed and gained (null: not pruned)
    quantization: Quantization | None  # the candidate search and the shipped variant (null: none)
    fidelity: Fidelity  # the shipped model against the source, on the held-back samples
    latency: Latency
    profile: Profile  # the shipped model's time per op on the host
    memory: Memory  # the estimated peak memory on the target against its budget
    golden: Golden  # the reference inputs and outputs `python -m runtime validate` checks
    accuracy: NotRequired[Accuracy]  # with labelled --eval data
    vocabulary: NotRequired[Vocabulary]  # with --vocab-from
    text: NotRequired[TextSection]  # a bundle that takes sentences
    distillation: NotRequired[Distillation]  # with build --distill
    warnings: list[str]  # what the user should know, one sentence each
    null_values: dict[str, str]  # what null means for the keys that are null by design (runtime/jsonsafe.py)


def checked(data: object, where: str) -> Manifest:
    """A parsed manifest.json, if it is one of this schema: a JSON object with every contract section."""
    if not isinstance(data, dict):
        raise EdgekilnError(f"{where} is not an edgekiln manifest (a JSON object)", "rebuild it with edgekiln")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise EdgekilnError(f"{where} has schema_version {version!r}; this edgekiln reads {SCHEMA_VERSION}",
                            "rebuild the bundle with this edgekiln")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise EdgekilnError(f"{where} is not a complete edgekiln manifest (no {', '.join(missing)})",
                            "rebuild the bundle with `edgekiln build`")
    return cast(Manifest, data)


def read(bundle: Path) -> Manifest:
    """BUNDLE/manifest.json, parsed and checked: the one way the compiler's commands read a built manifest."""
    path = bundle / MANIFEST_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise EdgekilnError(f"cannot read {path}: {' '.join(str(exc).split())}", "rebuild it with edgekiln") from None
    return checked(data, str(path))

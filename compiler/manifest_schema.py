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


class FixedInput(TypedDict):
    name: str
    declared: str
    shape: list[int]
    origin: str


class Source(TypedDict):
    file_name: str
    format: str
    sha256: str
    bytes: int
    params: int
    macs: int
    fixed_inputs: NotRequired[list[FixedInput]]
    shape_nodes_folded: NotRequired[int]


class Layout(TypedDict):
    """How the converter moved a tensor's axes (emit/tflite_from_onnx.py, e.g. onnx2tf's NCHW -> NHWC): the
    source's and the compiled model's axis letters, compiled = source.transpose(perm); the runtime undoes it."""

    source: str
    compiled: str
    perm: list[int]
    source_shape: list[int]


class TensorEntry(TypedDict):
    name: str
    shape: list[int]
    dtype: str
    scale: float
    zero_point: int
    layout: NotRequired[Layout]


class Model(TypedDict):
    file: str
    format: str
    sha256: str
    bytes: int
    params: int
    macs: int
    ops: dict[str, int]
    inputs: list[TensorEntry]
    outputs: list[TensorEntry]


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


class TargetEstimate(TypedDict):
    """The target's cost model (device/estimate.py): always `method: estimate`, with its basis and band."""

    method: str
    model: str
    p50_ms: float
    low_ms: float
    high_ms: float
    threads: int
    basis: str
    breakdown_ms: dict[str, float]
    error_band: list[float]
    fitted_on: list[str]
    held_out: list[str]
    sources: list[str]
    per_op_basis: dict[str, str]


class PruningLatency(TypedDict):
    unpruned_p50_ms: float
    p50_ms: float
    speedup: float | None
    latency_ratio: float | None
    macs_ratio: float


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


class Latency(TypedDict):
    host: HostLatency
    speedup_vs_baseline: float | None
    target_estimate: TargetEstimate | None
    device: list[DeviceEntry]
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


class Baseline(TypedDict):
    format: str
    quantization: str
    bytes: int
    latency: HostLatency
    fidelity: Fidelity
    target_estimate: TargetEstimate | None
    accuracy: NotRequired[float]


class Size(TypedDict):
    source_bytes: int
    baseline_bytes: int
    model_bytes: int
    ratio: float | None
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


class EvidenceEntry(TypedDict, total=False):
    """An Evidence as the manifest's quantization.evidence and a sweep's summary write it (Evidence.to_dict);
    `device` only for device timings, `host_would_choose` added by the search (select.py)."""

    kind: str
    target: str
    margin: float
    label: str
    warning: str | None
    device: str
    host_would_choose: str | None


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


class Timing(TypedDict, total=False):
    """How the candidates were timed: on this host in interleaved rounds, and with `build --device` on the
    device too (`device`)."""

    measured_on: str
    threads: int
    rounds: int
    runs_per_candidate: dict[str, int]
    method: str
    device: RaceMethod


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
    coverage: CoverageFacts | None


class Quantization(CandidateDetails, total=False):
    """The quantization section: the shipped mode and, with a candidate search, the whole table and the
    decision (search/select.quantization_block), with the chosen candidate's details spread in."""

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
    not_built: dict[str, str]
    refused_by_target: dict[str, str]
    failed: dict[str, str]
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
    macs: int
    unpruned_macs: int
    macs_ratio: float
    p50_ms: float
    unpruned_p50_ms: float
    latency_ratio: float
    speedup: float
    per_layer_ms: list[JsonObject]


class BudgetSplit(TypedDict):
    max_drop: float
    pruning_budget: float
    reserved_for_quantization: float
    pruning_drop: float
    quantization_drop: float
    total_drop: float
    unused: float
    samples: int
    note: NotRequired[str]


class Recovery(TypedDict, total=False):
    """How the pruned model won accuracy back: fine-tuning, distillation or least squares (`method`)."""

    method: str
    what: str
    samples: int
    seconds: float
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
    """One probe of the encoder auto search (`drop_layers`, `prune_heads`, and whether it met the budget)."""

    drop_layers: int
    prune_heads: float
    within_budget: bool


class PruningSearch(TypedDict, total=False):
    """The auto search of a pruning setting within the budget: filters (prune/driver.py) or encoder blocks and
    heads (prune/encoder_auto.py, with `probes`, the `chosen` one's index and the `rule`)."""

    budget: float
    probes: list[Probe]
    chosen: int | None
    rule: str
    stopped: str


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
    macs_before: int
    macs_after: int
    macs_ratio: float
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
    macs: int
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


class Golden(TypedDict):
    file: str
    samples: int
    atol: float
    rtol: float


class MemoryBasis(TypedDict):
    """What the manifest's memory estimate rests on: the runtime's base memory in MB, the interpreter pin, and
    where the base comes from (measured in targets/runtime_memory.toml, or the largest base there)."""

    runtime_base_mb: float
    runtime_interpreter: str
    runtime_base_source: str


class Memory(MemoryBasis):
    estimated_peak_mb: float
    budget_mb: int


class Manifest(TypedDict):
    schema_version: int
    compiler: dict[str, str]
    created_utc: str
    recipe: JsonObject
    target: JsonObject
    source: Source
    model: Model
    baseline: Baseline
    size: Size
    pruning: Pruning | None
    quantization: Quantization | None
    fidelity: Fidelity
    latency: Latency
    profile: Profile
    memory: Memory
    golden: Golden
    accuracy: NotRequired[Accuracy]
    warnings: list[str]
    null_values: dict[str, str]


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

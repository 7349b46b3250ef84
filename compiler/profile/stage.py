"""The build's profile stage: the shipped model profiled through the runtime on the golden sample, and for
a pruned build each layer's time before and after pruning side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgekiln.compiler.profile import block, profile_model
from edgekiln.compiler.tf_env import quiet_fds

if TYPE_CHECKING:
    from edgekiln.compiler.manifest_schema import Profile

TOP = 10
BUILD_RUNS = 10  # rounds per batch (up to 4 batches); every prefix model is timed once a round


PROFILE_ERRORS = (RuntimeError, ValueError, IndexError, KeyError)  # an interpreter that cannot cut the model


def measure_shipped(selection: Any, dataset: Any, threads: int, target: Any) -> Profile | Exception:
    """The full profile of the shipped model on the golden sample, or the interpreter error that kept the profiler
    from cutting it. Measured once a build: the manifest's `profile` block and, for a pruned build, the pruned
    side of each layer's time before and after pruning both read it."""
    try:
        return _profile(selection, dataset, threads, target)
    except PROFILE_ERRORS as exc:
        return exc


def shipped(measured: Profile | Exception) -> Profile:
    """The manifest's `profile` block of the shipped model (measure_shipped); a model the profiler cannot cut
    gets the reason instead of failing a build whose bundle is sound."""
    if isinstance(measured, Exception):
        return {"method": None, "unavailable": f"{type(measured).__name__}: {' '.join(str(measured).split())[:200]}",
                "ops": []}
    return block(measured, TOP)


def pruning_per_layer(pruned: Any, unpruned: Any, dataset: Any, threads: int,
                      pruned_profile: Profile | None = None) -> list[dict]:
    """[{layer, unpruned_ms, pruned_ms, ratio}] slowest unpruned layer first: did pruning make the layer faster?
    pruned_profile: the pruned (shipped) model's full profile when the build measured it already."""
    before = _profile(unpruned, dataset, threads, None)
    after = pruned_profile if pruned_profile is not None else _profile(pruned, dataset, threads, None)
    return layers_side_by_side(before, after, ("unpruned_ms", "pruned_ms"))


def layers_side_by_side(before: Profile, after: Profile,
                        keys: tuple[str, str] = ("before_ms", "after_ms")) -> list[dict]:
    """Two profiles' time per source layer, matched by layer name, slowest `before` layer first."""
    first, second = _by_layer(before), _by_layer(after)
    rows = [{"layer": layer, keys[0]: round(first.get(layer, 0.0), 4), keys[1]: round(second.get(layer, 0.0), 4),
             "ratio": round(second.get(layer, 0.0) / first[layer], 3) if first.get(layer) else None}
            for layer in [*first, *(layer for layer in second if layer not in first)]]
    return sorted(rows, key=lambda r: -r[keys[0]])


def _profile(selection: Any, dataset: Any, threads: int, target: Any) -> Profile:
    """Layers are read from the tensor names alone, as for a bundle, so the build's rows are the bundle's."""
    from edgekiln.runtime.model import Model

    with quiet_fds():  # every prefix interpreter would announce XNNPACK on fd 2
        model = Model(selection.format, selection.model, threads, selection.layouts)
        sample = [dataset.inputs[info.name][:1] for info in model.inputs]
        return profile_model(selection.format, selection.model, threads, sample, target, selection.layouts,
                             runs=BUILD_RUNS)


def _by_layer(profile: Profile) -> dict[str, float]:
    layers: dict[str, float] = {}
    for op in profile["ops"]:
        layers[op["layer"]] = layers.get(op["layer"], 0.0) + op["ms"]
    return layers

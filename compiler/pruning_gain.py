"""The measured gain of pruning, after measurement: the pruned build beside the unpruned model compiled as
the shipped variant (the search stage made it), timed side by side and profiled layer by layer, so the manifest
shows the speed-up measured, not only the MACs ratio; and what the accuracy budget was spent on."""

from __future__ import annotations

from typing import cast

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.evaluate.runner import open_model
from edgekiln.compiler.evaluate.timing import side_by_side, threads_for
from edgekiln.compiler.manifest_schema import Accuracy, BudgetSplit, MeasuredGain, Profile, Pruning
from edgekiln.compiler.profile import stage as profile_stage
from edgekiln.compiler.prune import driver
from edgekiln.compiler.pruning_stage import Pruned
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.search.select import Selection
from edgekiln.targets import Target


def measured(pruned: Pruned | None, selection: Selection, compiled: Selection | None, data: Datasets,
             recipe: Recipe, target: Target, shipped_profile: Profile | None = None) -> Pruning | None:
    """The pruning block completed with the unpruned model compiled as the shipped variant (`compiled`, None
    when nothing was removed), both timed side by side; shipped_profile: the shipped model's full profile, when
    the build measured it (each layer's pruned time is read from it rather than measured again)."""
    if pruned is None:
        return None
    block = cast(Pruning, pruned.block)  # the pruning stage's section of the manifest
    if not pruned.removed or compiled is None:
        return {**block, "measured": None}
    shipped = selection.variant
    unpruned = compiled.model
    threads = threads_for(recipe, target)
    models = [open_model(selection.format, s.model, threads, s.layouts) for s in (selection, compiled)]
    best = side_by_side(models, data.golden_set, recipe.bench_runs)
    per_layer = profile_stage.pruning_per_layer(selection, compiled, data.golden_set, threads, shipped_profile)
    macs = (selection.model_stats.macs, compiled.model_stats.macs)
    if "macs_before" not in block:  # head pruning: MACs of the compiled graphs
        block = {**block, "macs_before": macs[1], "macs_after": macs[0],
                 "macs_ratio": _macs_ratio(*macs)}
    because = {} if compiled.variant == shipped else \
        {"compiled_as_because": compiled.block["not_built"].get(shipped, "not built for the unpruned model")}
    gain = cast(MeasuredGain, {  # the optional `compiled_as_because` keeps its place among the keys
        "compiled_as": compiled.variant, "shipped_as": shipped, **because, "format": selection.format,
        "threads": threads,
        "model_bytes": len(selection.model), "unpruned_model_bytes": len(unpruned),
        "size_ratio": round(len(selection.model) / len(unpruned), 4),
        "macs": macs[0], "unpruned_macs": macs[1], "macs_ratio": _macs_ratio(*macs),
        "p50_ms": best[0]["p50_ms"], "unpruned_p50_ms": best[1]["p50_ms"],
        "latency_ratio": round(best[0]["p50_ms"] / best[1]["p50_ms"], 4),
        "speedup": round(best[1]["p50_ms"] / best[0]["p50_ms"], 3), "per_layer_ms": per_layer,
        "how": best[0]["how"]})
    return {**block, "measured": gain}


def _macs_ratio(pruned: int | None, unpruned: int | None) -> float | None:
    """pruned / unpruned MACs; None when either is unknown (never a ratio of partial counts)."""
    return None if pruned is None or unpruned is None else round(pruned / max(unpruned, 1), 4)


def with_budget_split(block: Pruning | None, accuracy: Accuracy | None, max_drop: float) -> Pruning | None:
    """What the accuracy budget was spent on, measured on the evaluation samples: pruning (the source vs the
    pruned float32 model, as converted) and quantization (that float32 model vs the shipped one). The auto
    search reserved QUANT_RESERVE of --max-drop for quantization before it could know; this says what
    quantization really took, and what of the budget was left unused."""
    search = block.get("search") if block else None
    if block is None or accuracy is None or search is None:
        return block
    pruning = round(accuracy["reference"] - accuracy["baseline"], 3)
    quantization = round(accuracy["baseline"] - accuracy["compiled"], 3)
    reserved = round(max_drop * driver.QUANT_RESERVE, 3)
    split: BudgetSplit = {
        "max_drop": max_drop, "pruning_budget": search["budget"], "reserved_for_quantization": reserved,
        "pruning_drop": pruning, "quantization_drop": quantization, "total_drop": accuracy["drop"],
        "unused": round(max_drop - accuracy["drop"], 3), "samples": accuracy["samples"]}
    if quantization < reserved:
        split["note"] = (f"quantization took {quantization:+.2f} of the {reserved:g} points reserved for it: the "
                         f"pruning search could have had {round(max_drop - max(quantization, 0.0), 3):g} "
                         "(not searched again)")
    return {**block, "budget_split": split}

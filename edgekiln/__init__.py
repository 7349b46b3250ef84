"""edgekiln: compile a trained model into a measured, validated bundle for an edge device.

The Python API is the command line's, with the same names::

    import edgekiln

    result = edgekiln.build("model.keras", target="rpi4", calib="calib.npz", eval="eval.npz",
                            output="build/model", quantize="auto")
    print(result.manifest["quantization"]["variant"], result.warnings)
    model = edgekiln.load(result.output)      # the bundle's own runtime: predict(), benchmark(), validate()
    y = model.predict(x)

`build` takes the keyword arguments of `edgekiln.Recipe` (the keys of a `--recipe` TOML file; a flag's
name with `-` as `_`), validates them exactly as the CLI does (`EdgekilnError` with a hint when one is
wrong) and returns a `BuildResult`. The packages: `edgekiln.compiler` (the compiler), `edgekiln.runtime`
(what ships in every bundle, as `runtime/`), `edgekiln.targets` (the device profiles).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekiln._version import __version__

if TYPE_CHECKING:
    from edgekiln.compiler.pipeline import BuildResult, Progress
    from edgekiln.runtime import BundleModel


def build(source: str | Path, *, progress: Progress | None = None, **options: Any) -> BuildResult:
    """Compile `source` into a bundle; `options` are Recipe fields (target, calib, eval, output, ...)."""
    import dataclasses

    from edgekiln.compiler.errors import RecipeError
    from edgekiln.compiler.pipeline import build as run_build
    from edgekiln.compiler.recipe import Recipe

    known = {f.name for f in dataclasses.fields(Recipe)} - {"source"}
    if unknown := sorted(set(options) - known):
        raise RecipeError(f"unknown option(s) {', '.join(unknown)}", f"edgekiln.build takes {', '.join(sorted(known))}")
    given: dict[str, Any] = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    recipe = Recipe(source=str(source), **given)  # each option's type is the Recipe's to check
    return run_build(recipe) if progress is None else run_build(recipe, progress)


def load(bundle_dir: str | Path) -> BundleModel:
    """A bundle's model in its own runtime (checksum verified): predict(), benchmark(), validate()."""
    from edgekiln.runtime import load as load_bundle

    return load_bundle(bundle_dir)


def __getattr__(name: str) -> Any:
    """`edgekiln.Recipe`, `edgekiln.BuildResult` and `edgekiln.EdgekilnError` without importing them eagerly."""
    if name == "Recipe":
        from edgekiln.compiler.recipe import Recipe

        return Recipe
    if name == "BuildResult":
        from edgekiln.compiler.pipeline import BuildResult

        return BuildResult
    if name == "EdgekilnError":
        from edgekiln.compiler.errors import EdgekilnError

        return EdgekilnError
    raise AttributeError(f"module 'edgekiln' has no attribute {name!r}")


__all__ = ["BuildResult", "EdgekilnError", "Recipe", "__version__", "build", "load"]

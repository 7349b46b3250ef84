"""The recipe's `input_shape`: what `--input-shape NAME=1,3,320,320` and a recipe's `input_shape` say, checked
and written back (the shapes the data imply are graph/shapes.py's; closing a model's axes, graph/onnx_shapes.py).

A shape names an input (`NAME=DIMS`) or, for a single-input model, may leave the name out (`DIMS`, kept
under the key "" until the model's input names are known). Every dim is a positive integer. Nothing here
imports the rest of the compiler but its errors, so the recipe and the graph adapters can both use it.
"""

from __future__ import annotations

from edgekiln.compiler.errors import RecipeError

UNNAMED = ""  # the key of a shape given without an input name (single-input models)
EXAMPLE = "e.g. --input-shape images=1,3,320,320 (recipe: input_shape = {images = [1, 3, 320, 320]})"


def parse_flag(texts: list[str]) -> dict[str, tuple[int, ...]]:
    """`--input-shape` values (NAME=D0,D1,... or D0,D1,...) as a name -> dims mapping."""
    shapes: dict[str, tuple[int, ...]] = {}
    for text in texts:
        name, _, dims = text.rpartition("=")
        name = name.strip()
        if name in shapes:
            raise RecipeError(f"--input-shape gives input '{name or '(unnamed)'}' twice", EXAMPLE)
        shapes[name] = _dims(dims.replace("x", ",").split(","), text)
    return shapes


def normalise(value: object) -> dict[str, tuple[int, ...]] | None:
    """The recipe's input_shape from a TOML table {name = [dims]}, a list of dims, or what parse_flag gave."""
    if value is None or value == {}:
        return None
    if isinstance(value, list | tuple):
        return {UNNAMED: _dims(value, str(list(value)))}
    if not isinstance(value, dict):
        raise RecipeError(f"input_shape must be a table of input name -> dims or a list of dims, got {value!r}",
                          EXAMPLE)
    return {str(name): _dims(dims, f"{name} = {dims!r}") for name, dims in value.items()}


def _dims(parts: object, text: str) -> tuple[int, ...]:
    if not isinstance(parts, list | tuple) or not parts:
        raise RecipeError(f"input shape '{text}' has no dims", EXAMPLE)
    dims = []
    for part in parts:
        try:
            dim = int(str(part).strip())
        except ValueError:
            raise RecipeError(f"input shape '{text}': '{part}' is not an integer", EXAMPLE) from None
        if dim < 1:
            raise RecipeError(f"input shape '{text}': every dim must be a positive integer, got {part}", EXAMPLE)
        dims.append(dim)
    return tuple(dims)


def to_toml(shapes: dict[str, tuple[int, ...]] | None) -> dict[str, list[int]] | list[int] | None:
    """The recipe value as the manifest and a recipe file write it."""
    if not shapes:
        return None
    if set(shapes) == {UNNAMED}:
        return list(shapes[UNNAMED])
    return {name: list(dims) for name, dims in shapes.items()}


def shape_text(dims: tuple[int, ...] | list[int]) -> str:
    return ",".join(str(d) for d in dims)

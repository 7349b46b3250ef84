"""The compiler: source model -> working graph -> pruned graph -> candidates -> chosen artifact -> bundle.

`pipeline.build(recipe)` lists the stages in order; `cli` is the `edgekiln` command line over it.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]  # a long step reports what it starts doing, in a few words

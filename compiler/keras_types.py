"""Names for Keras objects in annotations, in one place.

Keras ships no type information, so mypy sees these as Any whatever they say; they document what a
parameter holds. Keras is imported only for type checking: importing this module costs nothing at runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import keras

KerasModel: TypeAlias = "keras.Model"
KerasLayer: TypeAlias = "keras.layers.Layer"
KerasTensor: TypeAlias = "keras.KerasTensor"

"""A judge that counts: the real `Judge`, recording the bytes of every model it runs (no TensorFlow here)."""

from __future__ import annotations

import numpy as np

from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.quality import Quality


class CountingJudge(Judge):
    """The real judge, recording the bytes of every model it runs: tests count how often one model was judged."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.judged: list[bytes] = []

    def __call__(self, model_format: str, model_bytes: bytes, layouts: dict | None = None,
                 outputs: list[np.ndarray] | None = None) -> Quality:
        self.judged.append(model_bytes)
        return super().__call__(model_format, model_bytes, layouts, outputs)

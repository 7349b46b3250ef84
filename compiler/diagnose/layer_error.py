"""One layer's int8 error (LayerError): what the per-layer diagnosis (tflite_diagnosis.py) finds and causes.py reads."""

from __future__ import annotations

from dataclasses import dataclass

from edgekiln.compiler.manifest_schema import LayerFacts


@dataclass(frozen=True)
class LayerError:
    """One Keras layer (or fused group) as int8 sees it: its ops, their output tensors (what a denylist
    names) and its error. Several ops of one layer (a BN's MUL and ADD) are summed."""

    layer: str
    op: str
    tensors: tuple[str, ...]
    rmse_over_scale: float  # sqrt(MSE) in int8 steps, worst op; about 0.29 is plain rounding
    sqnr_db: float | None   # tensor-wide signal / noise, worst op; None = exact
    channel_nsr: float      # mean over channels of noise / signal power (model outputs: tensor-wide)
    share: float            # of the sum of channel_nsr over all layers

    def to_dict(self) -> LayerFacts:
        return {"layer": self.layer, "op": self.op, "tensors": list(self.tensors),
                "rmse_over_scale": round(self.rmse_over_scale, 4),
                "sqnr_db": None if self.sqnr_db is None else round(self.sqnr_db, 4),
                "channel_nsr": round(self.channel_nsr, 4), "share": round(self.share, 4)}

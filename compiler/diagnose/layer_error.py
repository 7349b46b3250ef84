"""One layer's int8 error (LayerError): what the per-layer diagnosis (tflite_diagnosis.py) finds and causes.py reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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

    def to_dict(self) -> dict:
        data = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        return dict(data, tensors=list(self.tensors))

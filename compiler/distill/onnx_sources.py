"""Why `distill`, `build --distill` and `--qat` refuse ONNX sources, in one place.

Both train in Keras 3, so they need a Keras 3 form of the graph. The one converter here that writes Keras from
ONNX, onnx2tf 1.29.24 (`-okv3` / `-oh5`), writes a Keras 2 (tf_keras) model whose layers are raw TensorFlow ops:
on the sample mnist_dwsep_nchw.onnx, 43 TFOpLambda layers, an InputLayer and a Flatten, no Conv2D or Dense.
Keras 3 loads neither file (`Could not locate class 'Functional'` for the .keras, `Unknown layer: 'TFOpLambda'`
for the .h5), and even loaded there would be no layer to narrow or fake-quantize: the weights are constants of
the ops. So these options are refused before anything loads, with what to do instead.
"""

from __future__ import annotations

from edgekiln.compiler.errors import InputModelError

WHY = ("an ONNX source has no trainable Keras 3 form here (onnx2tf writes it as Keras 2 raw-op layers, "
       "no Conv2D / Dense to train)")


def refuse(option: str, does: str, hint: str) -> InputModelError:
    """The one-line refusal of `option` (which `does` something in Keras 3) on an ONNX source."""
    return InputModelError(f"{option} {does} in Keras 3, and {WHY}", hint)


def refuse_build_options(source_format: str, distill: object, qat: bool) -> None:
    """build --distill / --qat on an ONNX source: refused (never a silent no-op)."""
    if source_format != "onnx":
        return
    if distill is not None:
        raise refuse("--distill", "trains the student",
                     "distill the Keras or PyTorch model the ONNX file came from, export the student and build it")
    if qat:
        raise refuse("--qat", "fine-tunes the model",
                     "leave out --qat (the post-training int8 candidates are still tried), or build from the "
                     "Keras model the ONNX file came from")

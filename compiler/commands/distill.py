"""`edgekiln distill TEACHER --train DATA -o STUDENT.keras`: a narrower student trained on the teacher's soft
targets (compiler/distill/), written as a Keras file with its report beside it (STUDENT.json).

Everything that can be refused is refused before training starts. Both files are written at the end, each to a
temporary name in the destination folder and then renamed: an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekiln.compiler import Progress
from edgekiln.compiler.data import in_model_types, load_data
from edgekiln.compiler.distill import engine, figures, onnx_sources
from edgekiln.compiler.errors import DataError, InputModelError, RecipeError
from edgekiln.compiler.graph import detect_format, keras_graph
from edgekiln.compiler.keras_types import KerasModel
from edgekiln.compiler.model_inputs import InputSpec
from edgekiln.compiler.paths import existing, writable_file
from edgekiln.runtime import jsonsafe


@dataclass(frozen=True)
class Request:
    """What the command was asked: the teacher, data, the student (auto, a width, a .keras file), the budget."""

    teacher: Path
    train: Path
    output: Path
    student: str = "auto"
    eval: Path | None = None
    max_drop: float = 1.0
    target: str = "rpi4"
    settings: engine.Settings = engine.Settings()
    unsafe: bool = False


def parse_student(value: str) -> float | str | Path:
    """'auto', a width in (0, 1], or a .keras file; anything else refused in one line."""
    if value == "auto":
        return value
    if value.endswith((".keras", ".h5")):
        return existing(value, "student model", "file", InputModelError)
    try:
        width = float(value)
    except ValueError:
        raise RecipeError(f"--student takes auto, a width in (0, 1] or a .keras file, got {value!r}",
                          "e.g. --student 0.5") from None
    if not 0 < width <= 1:
        raise RecipeError(f"--student width must lie in (0, 1], got {value}", "e.g. --student 0.5")
    return width


def check(request: Request) -> float | str | Path:
    """Refuse what cannot work before anything loads; the parsed --student."""
    student = parse_student(request.student)
    if detect_format(request.teacher) == "onnx":
        raise onnx_sources.refuse("distill", "trains the student",
                                  "distill the Keras or PyTorch model the ONNX file came from")
    if detect_format(request.teacher) not in ("keras", "h5"):
        raise InputModelError(f"distill takes a Keras teacher (.keras or .h5), got {request.teacher}",
                              "load it in Keras and save it as .keras")
    existing(request.teacher, "teacher model", error=InputModelError)
    if request.output.suffix != ".keras":
        raise RecipeError(f"-o names the student's Keras file and must end in .keras, got {request.output}")
    writable_file(request.output, "student file")
    if request.settings.epochs < 1 or request.settings.temperature <= 0:
        raise RecipeError("--epochs must be at least 1 and --temperature above 0")
    return student


def run(request: Request, progress: Progress) -> figures.Report:
    """Distil, judge, estimate, write the student and its report; the report."""
    student = check(request)
    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        graph = keras_graph.load(request.teacher, detect_format(request.teacher), Path(work), request.unsafe)
    assert graph.keras_model is not None, "a .keras / .h5 source loads as a Keras model"
    teacher_model = graph.keras_model
    if len(graph.inputs) != 1:
        raise InputModelError(f"distill trains single-input models; {request.teacher.name} has "
                              f"{len(graph.inputs)} inputs")
    x, y = _data(request.train, graph.inputs, "training")
    judge = None if request.eval is None else _data(request.eval, graph.inputs, "evaluation")
    classes = int(np.prod(teacher_model.outputs[0].shape[1:]))
    for data, role in ((y, "training"), (None if judge is None else judge[1], "evaluation")):
        if data is not None and (data.min() < 0 or data.max() >= classes):
            raise DataError(f"{role} labels 'y' range from {data.min()} to {data.max()}, but the teacher scores "
                            f"{classes} classes", "store class indices of the teacher's output in 'y'")
    teacher = engine.Teacher(teacher_model, x, y, judge, request.settings)
    chosen = student if not isinstance(student, Path) else _load_student(student, request.unsafe)
    outcome = engine.distill(teacher, chosen, request.max_drop, progress)
    progress(f"Estimating both on {request.target}")
    estimates = (figures.estimate_ms(teacher_model, request.target),
                 figures.estimate_ms(outcome.student.model, request.target))
    result = figures.report(outcome, str(request.teacher), str(request.output), request.settings.init,
                            request.target, estimates)
    _write(outcome.student.model, result, request.output)
    return result


def _data(path: Path, specs: list[InputSpec], role: str) -> tuple[np.ndarray, np.ndarray | None]:
    dataset = in_model_types(load_data(path, specs, role=role), specs)
    return next(iter(dataset.inputs.values())), dataset.labels


def _load_student(path: Path, unsafe: bool) -> KerasModel:
    from edgekiln.compiler.tf_env import import_keras

    try:
        return import_keras().models.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as exc:  # noqa: BLE001  (Keras raises many types; wrap them where they enter)
        raise InputModelError(f"cannot load the student {path}: {str(exc).splitlines()[0][:200]}",
                              "pass a Keras 3 .keras file (--unsafe for Lambda layers)") from exc


def report_path(output: Path) -> Path:
    """Where the report goes: beside the student, STUDENT.json."""
    return output.with_suffix(".json")


def _write(model: KerasModel, result: figures.Report, output: Path) -> None:
    """Both files under temporary names in the destination folder, then renamed (each rename is atomic)."""
    with tempfile.TemporaryDirectory(prefix=".edgekiln-", dir=output.parent or ".") as scratch:
        model_tmp, report_tmp = Path(scratch) / "student.keras", Path(scratch) / "report.json"
        model.save(model_tmp)
        report_tmp.write_text(jsonsafe.dumps(result, indent=2) + "\n")
        os.replace(model_tmp, output)
        os.replace(report_tmp, report_path(output))

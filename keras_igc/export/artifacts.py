"""`export(model, directory)`: every format written, or none."""

import dataclasses
import json
import os
import shutil
import tempfile

from keras_igc import preprocessing as records
from keras_igc import runs
from keras_igc.export import quantize as quant
from keras_igc.export import savedmodel
from keras_igc.export.dependencies import SUPPORTED_BACKENDS, check_backend, require  # noqa: F401 (doctests)
from keras_igc.export.folding import FoldingReport, prepare
from keras_igc.export.runtimes import INT8_RUNTIMES, RUNTIMES
from keras_igc.saving import load_keras_model

# The artifact's name in an export folder, by format (runtime).
FORMATS = {name: adapter.FILE for name, adapter in RUNTIMES.items()}

REPORT_FILE = "export_report.json"


@dataclasses.dataclass
class ExportResult:
    """Paths of the written artifacts and what the export did.

    Attributes:
        artifacts: path by format.
        sizes: bytes on disk by format.
        folding: the `FoldingReport` of each format's clone, by format: its
            `blocks` say which form each IGC block got in that format and why.
        litert_select_ops: TensorFlow ops the LiteRT file runs through the
            select-TF fallback (empty: builtin ops only).
        quantization: None, or a `quantize.QuantizationReport` of what the
            8-bit artifacts (`artifacts`' keys `litert_int8`, `onnx_int8`)
            hold.
    """

    artifacts: dict
    sizes: dict
    folding: FoldingReport
    litert_select_ops: list
    quantization: quant.QuantizationReport | None = None

    def to_json(self):
        data = dataclasses.asdict(self)
        if self.quantization is not None:
            data["quantization"] = self.quantization.to_dict()
        return json.dumps(data, indent=2)


def export(
    model,
    directory,
    formats=tuple(FORMATS),
    *,
    fold=True,
    block_form="auto",
    grouped_conv_form="auto",
    quantize=None,
    calibration=None,
    int8_io=False,
    overwrite=False,
    verbose=True,
    preprocessing=None,
):
    """Export a model to SavedModel, LiteRT and ONNX artifacts in `directory`.

    Each format gets its own clone (`prepare(..., runtime=format)`), with
    every IGC block in the form that format's runtime runs fastest: for
    ONNX and LiteRT the primary as their grouped convolution where that
    measured faster (`keras_igc.forms`, whose rules name their benchmark).

    Args:
        model: a built Functional or Sequential Keras model, or a source
            `load_source` accepts (a `.keras` path or an application name).
        directory: folder for the artifacts (created if missing). Other files
            in it are left alone.
        formats: any of `"savedmodel"`, `"litert"`, `"onnx"`.
        fold, block_form, grouped_conv_form: see `prepare`.
        quantize: None, `"int8"` (full-integer LiteRT with per-channel
            weight scales, ONNX QDQ per channel; activations calibrated) or
            `"dynamic"` (int8 weights only): also writes `model_int8.tflite`
            and `model_int8.onnx` beside the float LiteRT and ONNX files.
        calibration: for `"int8"`: images (an array or a `tf.data.Dataset`)
            or `"DATASET[:N]"` (`export.quant.calibration_images`); none for
            a quantization-aware model (`keras_igc.quantization`), whose
            int8 files take the ranges it learned. Its float files hold the
            rounded weights it trained, with float activations.
        int8_io: the int8 LiteRT file takes and gives int8 tensors (the
            input and output scales are in the file); default float.
        overwrite: replace artifacts that exist; otherwise an existing one is
            an error and nothing is written.
        preprocessing: a `keras_igc.preprocessing.Preprocessing` to write
            beside the artifacts (`keras-igc predict` reads it); default: the
            one beside a `.keras` source (`train` writes it).
        verbose: print what was written.

    Returns:
        An `ExportResult`, also written as `export_report.json`.

    Example:

    >>> import tempfile, keras, keras_igc
    >>> from keras_igc import export
    >>> model = keras.Sequential([
    ...     keras.Input((16, 16, 8)),
    ...     keras_igc.IGCConv2D(4, 2, padding="same", use_bias=False),
    ...     keras.layers.BatchNormalization(),
    ...     keras.layers.ReLU(),
    ... ])
    >>> result = export.export(model, tempfile.mkdtemp(), ["savedmodel"],
    ...                        verbose=False)
    >>> result.folding["savedmodel"].blocks[0]["form"]
    'grouped_primary'
    """
    check_backend()
    if isinstance(model, str):
        model, preprocessing = load_source(model), preprocessing or record_of(model)
    formats = _check_formats(formats)
    model, rounded = _quantize_aware_sources(model, quantize)
    quantization, images = _quantization(
        model, quantize, calibration, int8_io, rounded is not None
    )
    if "onnx" in formats:
        require("tf2onnx", "ONNX export")
    _check_directory(directory)
    artifacts = _artifact_paths(directory, formats, quantization)
    existing = [p for p in artifacts.values() if os.path.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(
            f"Export would replace {existing}. Choose another directory, remove "
            f"them, or pass overwrite=True (--overwrite) to replace them."
        )
    stage = _prepared(model, rounded, formats, fold=fold, block_form=block_form,
                      grouped_conv_form=grouped_conv_form)  # fmt: skip
    _make_directory(directory)
    select_ops = _write(directory, stage, artifacts, existing, quantization, images)
    result = ExportResult(
        artifacts=artifacts,
        sizes={fmt: _disk_size(path) for fmt, path in artifacts.items()},
        folding=stage["folding"], litert_select_ops=select_ops,
        quantization=quantization,
    )  # fmt: skip
    runs.write_text(os.path.join(directory, REPORT_FILE), result.to_json())
    if preprocessing is not None:
        preprocessing.save(directory)
    if verbose:
        _print_summary(result)
    return result


def _prepared(model, rounded, formats, **options):
    """`Stage`'s arguments: each format's clone of `model` and its report,
    and of a quantization-aware model's `rounded` one, by 8-bit format."""
    prepared, folding = {}, {}
    for fmt in formats:
        prepared[fmt], folding[fmt] = prepare(model, runtime=fmt, **options)
    if rounded is not None:
        rounded = {
            fmt: prepare(rounded, runtime=fmt, **options)[0]
            for fmt in formats
            if fmt in INT8_RUNTIMES
        }
    return {"prepared": prepared, "folding": folding, "rounded": rounded}


def _quantize_aware_sources(model, quantize):
    """`(model, rounded)`: a quantization-aware model as the float model its
    float files hold, and (for int8) the rounded one its int8 files are
    converted from (`quantization.inference_model`); else `(model, None)`."""
    from keras_igc import quantization

    if not quantization.is_quantize_aware(model):
        return model, None
    rounded = quantization.inference_model(model) if quantize == "int8" else None
    return quantization.inference_model(model, round_activations=False), rounded


def _quantization(model, quantize, calibration, int8_io, quantize_aware=False):
    """`(report, calibration images)` of the 8-bit artifacts asked for, or
    `(None, None)`; bad arguments refused before anything is written."""
    quant.check_scheme(quantize, int8_io)
    if quantize is None:
        return None, None
    images = None
    if quantize == "int8" and quantize_aware:
        if calibration is not None:
            raise ValueError(
                "This model is quantization-aware: its int8 files take the "
                "ranges it learned in training. Leave calibration out "
                "(--calibration)."
            )
    elif quantize == "int8":
        images = quant.calibration_images(calibration, model.input_shape)
    report = quant.QuantizationReport(
        scheme=quantize,
        int8_io=int8_io,
        calibration_examples=0 if images is None else len(images),
        quantize_aware=quantize_aware,
    )
    return report, images


def _artifact_paths(directory, formats, quantization):
    """Path by format (`"litert_int8"`, `"onnx_int8"` for 8-bit ones)."""
    paths = {fmt: os.path.join(directory, FORMATS[fmt]) for fmt in formats}
    if quantization is not None:
        for fmt in formats:
            if fmt in INT8_RUNTIMES:
                paths[f"{fmt}_int8"] = os.path.join(
                    directory, INT8_RUNTIMES[fmt].INT8_FILE
                )
    return paths


class Stage:
    """The files of one export in its scratch folder, before they move into
    place; what an adapter's `write` and `write_int8` read of the others'.

    Args:
        scratch: the scratch folder.
        prepared: each format's clone (`prepare`), by format.
        folding: each clone's `FoldingReport`, by format.
        rounded: None, or for a quantization-aware model the clone of its
            rounded model (`quantization.inference_model`) by 8-bit format,
            which its int8 file is converted from.
    """

    def __init__(self, scratch, prepared, folding, rounded=None):
        self.scratch, self.prepared, self.folding = scratch, prepared, folding
        self.rounded = rounded
        self._saved_models = {}

    def path(self, runtime):
        """Where `runtime`'s float artifact is staged."""
        return os.path.join(self.scratch, RUNTIMES[runtime].FILE)

    def int8_path(self, runtime):
        """Where `runtime`'s 8-bit artifact is staged."""
        return os.path.join(self.scratch, INT8_RUNTIMES[runtime].INT8_FILE)

    def saved_model(self, runtime, rounded=False):
        """A SavedModel of `runtime`'s clone (`rounded`: of its rounded
        clone), for converters that read one: the SavedModel artifact itself
        where its layers took the same forms (one export fewer), else one
        written for `runtime` alone."""
        if rounded:
            path = os.path.join(self.scratch, f"{runtime}_rounded_saved_model")
            if not os.path.exists(path):
                savedmodel.write(self.rounded[runtime], path)
            return path
        if runtime not in self._saved_models:
            mine = self.folding[runtime]
            if "savedmodel" in self.prepared and _forms(mine) == _forms(
                self.folding["savedmodel"]
            ):
                runtime_of_file = "savedmodel"
                path = self.path("savedmodel")
            else:
                runtime_of_file = runtime
                path = os.path.join(self.scratch, f"{runtime}_saved_model")
            if not os.path.exists(path):
                savedmodel.write(self.prepared[runtime_of_file], path)
            self._saved_models[runtime] = path
        return self._saved_models[runtime]


def _write(directory, stage, artifacts, existing, quantization, images):
    """Write every format's artifact (and its 8-bit one with `quantization`,
    whose `float_ops` it records); the ops LiteRT runs through select-TF.

    Artifacts are staged and moved into place only when every format has
    succeeded, so a failed export leaves the directory as it was.
    """
    fallback_ops = {}
    _remove_abandoned_scratch(directory)
    # The scratch folder carries this process's id, so that a later export
    # can tell one abandoned by a killed process from one still in use.
    prefix = f"{SCRATCH_PREFIX}{os.getpid()}-"
    with tempfile.TemporaryDirectory(dir=directory, prefix=prefix) as scratch:
        stage = Stage(scratch, **stage)
        prepared, staged = stage.prepared, {}
        for fmt, adapter in RUNTIMES.items():  # the SavedModel first
            if fmt not in prepared:
                continue
            staged[fmt] = stage.path(fmt)
            fallback_ops[fmt] = adapter.write(prepared[fmt], staged[fmt], stage)
            if quantization and fmt in INT8_RUNTIMES:
                staged[f"{fmt}_int8"] = stage.int8_path(fmt)
                kept = adapter.write_int8(
                    stage, staged[f"{fmt}_int8"], quantization.scheme, images,
                    quantization.int8_io,
                )  # fmt: skip
                if kept is not None:  # a runtime whose rule can keep some
                    quantization.kept_float[fmt] = kept
                quantization.float_ops[fmt] = adapter.float_ops(staged[f"{fmt}_int8"])
                gates = quant.gate_logits_type(
                    adapter.gate_logits(staged[f"{fmt}_int8"])
                )
                if gates is not None:
                    quantization.gate_logits = quantization.gate_logits or {}
                    quantization.gate_logits[fmt] = gates
        for path in existing:
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        for fmt, path in artifacts.items():
            os.replace(staged[fmt], path)
    return fallback_ops.get("litert", [])


SCRATCH_PREFIX = ".export-"


def add_to_report(directory, key, value):
    """Add `key: value` to the export report in `directory` (a check's
    findings beside what the export wrote), rewritten whole or not at all."""
    path = os.path.join(directory, REPORT_FILE)
    with open(path) as f:
        report = json.load(f)
    report[key] = value
    runs.write_text(path, json.dumps(report, indent=2))


def _check_directory(directory):
    """A ValueError naming `directory` if it cannot hold the artifacts."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(
            f"The export folder {directory!r} is a file. Pass a folder (it is "
            f"created if missing)."
        )
    parent = directory
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    parent = parent or "."
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"Cannot write the export folder {directory!r}: {parent!r} is not a "
            f"writable folder. Pass a folder you can write to."
        )


def _make_directory(directory):
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"Cannot create the export folder {directory!r} ({error.strerror})."
        ) from None


def _remove_abandoned_scratch(directory):
    """Remove the scratch folders of exports whose process is gone (killed,
    or crashed), so that none is left for the next run to trip on."""
    for name in os.listdir(directory):
        if not name.startswith(SCRATCH_PREFIX):
            continue
        owner = name[len(SCRATCH_PREFIX) :].split("-")[0]
        if owner.isdigit() and runs.process_alive(int(owner)):
            continue
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def _print_summary(result):
    for fmt, report in result.folding.items():
        print(f"{fmt}: {report.summary()}")
    for fmt, path in result.artifacts.items():
        print(f"{fmt}: {path} ({result.sizes[fmt] / 2**20:.2f} MiB)")
    float_ops = result.quantization.float_ops if result.quantization else {}
    for fmt, ops in float_ops.items():
        print(f"{fmt}_int8: left in float: {ops or 'nothing'}")
    if result.litert_select_ops:
        print(f"litert: select-TF fallback for {result.litert_select_ops}")


def _forms(report):
    """What a format's clone emits: each layer's form and its groups."""
    entries = (*report.blocks, *report.msgc_layers, *report.grouped_convs)
    return [
        (entry["form"], entry.get("primary_groups", entry.get("groups")))
        for entry in entries
    ]


def record_of(source):
    """The preprocessing record beside a `.keras` source (`train` writes
    one), or None."""
    return records.read(source) if source.endswith(".keras") else None


def load_source(source, weights=None, **kwargs):
    """A model from a `.keras` file or an application name.

    Args:
        source: a `.keras` path, a builder of `keras_igc.applications`
            ("IGCNet38") or a registered name ("IGC-L24M2+Ident.").
        weights: optional weights file for an application.
        **kwargs: builder arguments for an application (e.g. `depth`).
    """
    if source.endswith(".keras"):
        if not os.path.exists(source):
            raise FileNotFoundError(f"No such model file: {source!r}.")
        if weights is not None or kwargs:
            raise ValueError(
                "A .keras file carries its own weights and configuration; "
                "`weights` and builder arguments apply to application names only."
            )
        return load_keras_model(source)
    from keras_igc import applications

    return applications.get_model(source, weights=weights, **kwargs)


def _check_formats(formats):
    formats = [formats] if isinstance(formats, str) else list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(
            f"Unknown export format(s) {unknown or formats!r}. Choose from "
            f"{list(FORMATS)}."
        )
    return formats


def _disk_size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )

"""`export(model, directory)`: every format written, or none."""

import dataclasses
import json
import os
import shutil
import tempfile

from keras_igc import preprocessing as records
from keras_igc import runs
from keras_igc.export import litert, onnx, savedmodel
from keras_igc.export import quantize as quant
from keras_igc.export.dependencies import SUPPORTED_BACKENDS, check_backend, require  # noqa: F401 (doctests)
from keras_igc.export.folding import FoldingReport, prepare
from keras_igc.saving import load_keras_model

FORMATS = {"savedmodel": "saved_model", "litert": "model.tflite", "onnx": "model.onnx"}

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
        quantization: None, or what the 8-bit artifacts (`artifacts`' keys
            `litert_int8`, `onnx_int8`) hold: `scheme`, `calibration_examples`,
            `int8_io`, per format `float_ops` (`{op: count}` of the
            operations left in float, which the runtime has no integer
            kernel for or the scheme leaves float), and `kept_float`
            (`{"onnx": {node: why}}`: the convolutions the int8 rule
            (`quantize.INT8_RULES`) keeps float, where ONNX Runtime's integer
            kernel measured slower). With MSGC layers, `gate_logits`: per
            format, the type of the mask logits the gates compare with their
            threshold (`"int8"`: a logit within a quantization step of it
            can decide otherwise than in float; `check_quantized` counts
            the flips).
    """

    artifacts: dict
    sizes: dict
    folding: FoldingReport
    litert_select_ops: list
    quantization: dict | None = None

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2)


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
            or `"DATASET[:N]"` (`export.quant.calibration_images`).
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
    quantization, images = _quantization(model, quantize, calibration, int8_io)
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
    prepared, folding = {}, {}
    for fmt in formats:
        prepared[fmt], folding[fmt] = prepare(
            model, fold=fold, runtime=fmt, block_form=block_form,
            grouped_conv_form=grouped_conv_form,
        )  # fmt: skip
    _make_directory(directory)
    select_ops = _write(
        directory, prepared, folding, artifacts, existing, quantization, images
    )
    result = ExportResult(
        artifacts=artifacts,
        sizes={fmt: _disk_size(path) for fmt, path in artifacts.items()},
        folding=folding,
        litert_select_ops=select_ops,
        quantization=quantization,
    )
    runs.write_text(os.path.join(directory, REPORT_FILE), result.to_json())
    if preprocessing is not None:
        preprocessing.save(directory)
    if verbose:
        _print_summary(result)
    return result


def _quantization(model, quantize, calibration, int8_io):
    """`(report, calibration images)` of the 8-bit artifacts asked for, or
    `(None, None)`; bad arguments refused before anything is written."""
    quant.check_scheme(quantize, int8_io)
    if quantize is None:
        return None, None
    images = None
    if quantize == "int8":
        images = quant.calibration_images(calibration, model.input_shape)
    report = {
        "scheme": quantize,
        "int8_io": int8_io,
        "calibration_examples": 0 if images is None else len(images),
    }
    return report, images


def _artifact_paths(directory, formats, quantization):
    """Path by format (`"litert_int8"`, `"onnx_int8"` for 8-bit ones)."""
    paths = {fmt: os.path.join(directory, FORMATS[fmt]) for fmt in formats}
    if quantization is not None:
        for fmt in quant.FILES:
            if fmt in formats:
                paths[f"{fmt}_int8"] = os.path.join(directory, quant.FILES[fmt])
    return paths


def _write(directory, prepared, folding, artifacts, existing, quantization, images):
    """Write every format's artifact (and its 8-bit one with `quantization`,
    whose `float_ops` it records); the ops LiteRT runs through select-TF.

    Artifacts are staged and moved into place only when every format has
    succeeded, so a failed export leaves the directory as it was.
    """
    select_ops = []
    _remove_abandoned_scratch(directory)
    # The scratch folder carries this process's id, so that a later export
    # can tell one abandoned by a killed process from one still in use.
    prefix = f"{SCRATCH_PREFIX}{os.getpid()}-"
    with tempfile.TemporaryDirectory(dir=directory, prefix=prefix) as scratch:
        staged = {fmt: os.path.join(scratch, FORMATS[fmt]) for fmt in FORMATS}
        staged.update(
            {
                f"{fmt}_int8": os.path.join(scratch, name)
                for fmt, name in quant.FILES.items()
            }
        )
        if "savedmodel" in prepared:
            savedmodel.write(prepared["savedmodel"], staged["savedmodel"])
        if "litert" in prepared:
            # LiteRT converts a SavedModel: the SavedModel's own where its
            # layers took the same forms, else one of LiteRT's clone.
            source = staged["savedmodel"]
            if "savedmodel" not in prepared or _forms(folding["litert"]) != _forms(
                folding["savedmodel"]
            ):
                source = os.path.join(scratch, "litert_saved_model")
                savedmodel.write(prepared["litert"], source)
            select_ops = litert.write(source, staged["litert"])
            if quantization:
                quant.litert(source, staged["litert_int8"], quantization["scheme"],
                                images, quantization["int8_io"])  # fmt: skip
        if "onnx" in prepared:
            onnx.write(prepared["onnx"], staged["onnx"])
            if quantization:
                kept = quant.onnx(staged["onnx"], staged["onnx_int8"],
                                  quantization["scheme"], images)  # fmt: skip
                quantization["kept_float"] = {"onnx": kept}
        if quantization:
            quantization["float_ops"] = {
                fmt: quant.float_ops(fmt, staged[f"{fmt}_int8"])
                for fmt in quant.FILES if fmt in prepared
            }  # fmt: skip
            gate_logits = {
                fmt: quant.gate_logits(fmt, staged[f"{fmt}_int8"])
                for fmt in quant.FILES if fmt in prepared
            }  # fmt: skip
            if any(gate_logits.values()):
                quantization["gate_logits"] = gate_logits
        for path in existing:
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        for fmt, path in artifacts.items():
            os.replace(staged[fmt], path)
    return select_ops


SCRATCH_PREFIX = ".export-"


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
    for fmt, ops in ((result.quantization or {}).get("float_ops") or {}).items():
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

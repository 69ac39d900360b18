"""Ship IGC networks: SavedModel, LiteRT and ONNX exports, folding and a check.

`export(model, directory)` writes the artifacts that run without keras_igc:

- `saved_model/`: a SavedModel with a batch-polymorphic `serve` signature, for
  `tf.saved_model.load` and `keras.layers.TFSMLayer` (`savedmodel.py`);
- `model.tflite`: LiteRT, builtin ops where the converter manages, the
  select-TF fallback otherwise (the result names the ops that needed it)
  (`litert.py`);
- `model.onnx`: ONNX through Keras' exporter and tf2onnx, the `export` extra
  (`onnx.py`).

Before exporting, `prepare` (`folding.py`) clones the model for each format,
every layer in the form `keras_igc.forms` chooses for that format's runtime,
and with `fold=True` folds each BatchNorm into the convolution before it.
`check` (`check.py`) loads each artifact in its own runtime and compares it
with the Keras model. Export needs the TensorFlow
backend.
"""

from keras_igc.export.artifacts import (
    FORMATS,
    REPORT_FILE,
    ExportResult,
    add_to_report,
    export,
    load_source,
    record_of,
)
from keras_igc.export.check import (
    INT8_GOALS,
    MIN_AGREEMENT,
    check,
    check_quantized,
    format_check,
    format_quantized,
)
from keras_igc.export.dependencies import SUPPORTED_BACKENDS, MissingDependencyError
from keras_igc.export.folding import BLOCK_FORMS, FoldingReport, prepare

__all__ = [
    "BLOCK_FORMS",
    "FORMATS",
    "REPORT_FILE",
    "SUPPORTED_BACKENDS",
    "ExportResult",
    "FoldingReport",
    "add_to_report",
    "MissingDependencyError",
    "check",
    "check_quantized",
    "INT8_GOALS",
    "MIN_AGREEMENT",
    "format_quantized",
    "export",
    "format_check",
    "load_source",
    "prepare",
    "record_of",
]

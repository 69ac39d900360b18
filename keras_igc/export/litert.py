"""The LiteRT runtime (`.tflite`): converted from a SavedModel of the
runtime's clone; its 8-bit file full-integer (per-channel weight scales,
calibrated activations) or weight-only.

An adapter module of `keras_igc.export.runtimes`: its names are the ones
every adapter defines (see that module).
"""

import warnings

import numpy as np

from keras_igc import forms, keras_internals
from keras_igc.export.dependencies import runtime_threads
from keras_igc.layers.msgc_conv2d import GATE_DECISION

NAME = "litert"
FILE = "model.tflite"
SUFFIX = ".tflite"
INT8_FILE = "model_int8.tflite"


def _int8(g):
    """Every convolution in int8 (XNNPACK's kernels, grouped ones too)."""
    return "int8", "litert: XNNPACK's int8 convolutions, grouped ones included"


# Which convolutions of the 8-bit file run in int8 (`forms.Rule` of kind
# "int8"): XNNPACK runs every convolution fast in int8.
INT8_RULE = forms.Rule(NAME, "int8", _int8, "benchmarks/results/quantize-cpu.json")


def write(model, path, stage):
    """Write `model` (the runtime's clone) as a `.tflite` file at `path`,
    converted from its SavedModel (`stage.saved_model`); returns the
    TensorFlow ops that needed the select-TF fallback (empty: builtin only)."""
    return _convert(stage.saved_model(NAME), path)


def write_int8(stage, path, scheme, images, int8_io=False, batch=8):
    """Write the 8-bit file of the SavedModel `write` converted (of a
    quantization-aware model: of its rounded clone, `stage.rounded`, whose
    fixed ranges the converter reads, with no calibration); returns None:
    `INT8_RULE` keeps no convolution float."""
    import tensorflow as tf

    learned = scheme == "int8" and stage.rounded is not None
    converter = tf.lite.TFLiteConverter.from_saved_model(
        stage.saved_model(NAME, rounded=learned), signature_keys=["serve"]
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if learned:
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif scheme == "int8":

        def representative():
            for start in range(0, len(images), batch):
                yield [images[start : start + batch]]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    with open(path, "wb") as f:
        f.write(converter.convert())
    return None


def _convert(saved_model, path):
    """Convert with builtin ops; fall back to select-TF ops only if needed."""
    import tensorflow as tf

    def convert(op_sets):
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model, signature_keys=["serve"]
        )
        converter.target_spec.supported_ops = op_sets
        return converter.convert()

    select_ops = []
    try:
        flatbuffer = convert([tf.lite.OpsSet.TFLITE_BUILTINS])
    except Exception:
        flatbuffer = convert(
            [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        )
        interpreter = make_interpreter(model_content=flatbuffer)
        select_ops = sorted(
            {
                op["op_name"].removeprefix("Flex")
                for op in keras_internals.litert_ops(interpreter)
                if op["op_name"].startswith("Flex")
            }
        )
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return select_ops


def make_interpreter(**kwargs):
    """LiteRT's own runtime (`ai-edge-litert`, the `export` extra) where it is
    installed: newer XNNPACK kernels than TensorFlow's deprecated `tf.lite`
    (benchmarks/NOTES.md); else `tf.lite`."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return tf.lite.Interpreter(**kwargs)
    return Interpreter(**kwargs)


def runner(path, probes=()):
    """A function that loads the artifact and returns its `predict`.

    `probes`: names of inner tensors (`tensor_names`) that `predict` also
    returns, as `(output, [probe values])`.
    """

    def make():
        # Every core (or OMP_NUM_THREADS), as ONNX Runtime and PyTorch use
        # by default (LiteRT's default can be one thread). Inner tensors
        # outlive `invoke` only when the interpreter is told to keep them.
        keep = {"experimental_preserve_all_tensors": True} if probes else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "for debugging"
            interpreter = make_interpreter(
                model_path=path, num_threads=runtime_threads(), **keep
            )
        (source,), (target,) = (
            interpreter.get_input_details(),
            interpreter.get_output_details(),
        )
        indices = {t["name"]: t["index"] for t in interpreter.get_tensor_details()}
        probed = [indices[name] for name in probes]
        shape = [None]

        def run(x):
            if shape[0] != x.shape:
                interpreter.resize_tensor_input(source["index"], x.shape)
                interpreter.allocate_tensors()
                shape[0] = x.shape
            interpreter.set_tensor(source["index"], _to_input(x, source))
            interpreter.invoke()
            y = _from_output(interpreter.get_tensor(target["index"]), target)
            if not probes:
                return y
            return y, [interpreter.get_tensor(i) for i in probed]

        return run

    return make


def io_shapes(path):
    """`(input shape, output shape)` of the file, batch axes first."""
    interpreter = make_interpreter(model_path=path)
    (source,), (target,) = (
        interpreter.get_input_details(),
        interpreter.get_output_details(),
    )
    return tuple(
        tuple(int(d) for d in details["shape"]) for details in (source, target)
    )


def tensor_names(path):
    """The names of the file's tensors (what `runner` can probe)."""
    interpreter = make_interpreter(model_path=path)
    return [t["name"] for t in interpreter.get_tensor_details()]


def _to_input(x, source):
    """`x` in the file's input type: quantized by its scale for an int8 input."""
    if source["dtype"] == np.float32:
        return x
    scale, zero = source["quantization"]
    info = np.iinfo(source["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(
        source["dtype"]
    )


def _from_output(y, target):
    """The output in float: dequantized by its scale for an int8 output."""
    if target["dtype"] == np.float32:
        return y
    scale, zero = target["quantization"]
    return (y.astype("float32") - zero) * scale


def float_ops(path):
    """The operations of an 8-bit file that compute in float, by type:
    `{op: count}` (what LiteRT has no integer kernel for)."""
    interpreter = make_interpreter(model_path=path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    found = {}
    for op in keras_internals.litert_ops(interpreter):
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        outputs = [tensors[i]["dtype"] for i in op["outputs"] if i in tensors]
        if any(np.dtype(d) == np.float32 for d in outputs):
            found[op["op_name"]] = found.get(op["op_name"], 0) + 1
    return found


def gate_logits(path):
    """The types of the mask logits the MSGC gates of the file compare with
    their threshold (LiteRT compares the int8 values themselves)."""
    interpreter = make_interpreter(model_path=path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return {
        np.dtype(tensors[op["inputs"][0]]["dtype"]).name
        for op in keras_internals.litert_ops(interpreter)
        if op["op_name"] == "GREATER_EQUAL"
        and GATE_DECISION.search(tensors[op["outputs"][0]]["name"])
    }

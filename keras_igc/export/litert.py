"""LiteRT (`.tflite`), converted from the SavedModel."""

import os
import warnings

import numpy as np

from keras_igc import keras_internals


def write(saved_model, path):
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
        # Every core, as ONNX Runtime and PyTorch use by default (LiteRT's
        # default can be one thread). Inner tensors outlive `invoke` only
        # when the interpreter is told to keep them.
        keep = {"experimental_preserve_all_tensors": True} if probes else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "for debugging"
            interpreter = make_interpreter(
                model_path=path, num_threads=os.cpu_count(), **keep
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

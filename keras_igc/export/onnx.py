"""ONNX, through Keras' exporter and tf2onnx (the `export` extra)."""

import os
import warnings

from keras_igc.export.dependencies import require


def write(model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.export(path, format="onnx", verbose=False)
    onnx = require("onnx", "ONNX export")
    # tf2onnx writes unconvertible TensorFlow functions as nodes that no
    # runtime can load, without failing; refuse such a file here.
    leftovers = sorted(
        {
            node.op_type
            for node in onnx.load(path).graph.node
            if node.op_type.endswith("PartitionedCall")
        }
    )
    if leftovers:
        os.remove(path)
        raise RuntimeError(
            f"tf2onnx could not convert {leftovers} nodes (XLA-compiled "
            f"functions). Report this with the model's summary."
        )


def runner(path):
    """A function that loads the artifact and returns its `predict`."""

    def make():
        ort = require("onnxruntime", "Running the ONNX artifact")
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]

    return make

"""The SavedModel runtime: Keras' own TensorFlow export, with a
batch-polymorphic `serve` signature (`tf.saved_model.load`,
`keras.layers.TFSMLayer`). No 8-bit file: LiteRT and ONNX carry those.

An adapter module of `keras_igc.export.runtimes`: its names are the ones
every adapter defines (see that module).
"""

NAME = "savedmodel"
FILE = "saved_model"
SUFFIX = None  # a folder: `predict` reads the `.keras` model instead
INT8_FILE = None
INT8_RULE = None


def write(model, path, stage=None):
    """Write `model` as a SavedModel folder at `path`; no op needs a fallback."""
    model.export(path, format="tf_saved_model", verbose=False)
    return []


def runner(path, probes=()):
    """A function that loads the artifact and returns its `predict`."""
    if probes:
        raise ValueError("A SavedModel's inner tensors cannot be probed.")

    def make():
        import tensorflow as tf

        loaded = tf.saved_model.load(path)  # owns the variables `serve` reads
        return lambda x: loaded.serve(x).numpy()

    return make

"""SavedModel: Keras' own TensorFlow export, with a batch-polymorphic `serve`."""


def write(model, path):
    model.export(path, format="tf_saved_model", verbose=False)


def runner(path):
    """A function that loads the artifact and returns its `predict`."""

    def make():
        import tensorflow as tf

        loaded = tf.saved_model.load(path)  # owns the variables `serve` reads
        return lambda x: loaded.serve(x).numpy()

    return make

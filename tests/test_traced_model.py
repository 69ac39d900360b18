import keras
import numpy as np
import pytest
from harness import assert_close

import keras_igc
from keras_igc.applications import MSGCResNet18


class _CountsCalls(keras.layers.Layer):
    """Identity that counts how often its Python `call` runs: once per trace
    in a graph, once per call in eager execution."""

    runs = 0

    def call(self, x):
        type(self).runs += 1
        return x


def _block_model(counter=False):
    inputs = keras.Input((8, 8, 12))
    x = keras_igc.IGCConv2D(4, 3, padding="same", name="igc")(inputs)
    if counter:
        x = _CountsCalls()(x)
    outputs = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x))
    return keras_igc.TracedModel(inputs, outputs)


def _images(shape=(2, 8, 8, 12), seed=0):
    return np.random.default_rng(seed).random(shape).astype("float32")


def _keras_own_call(model, *args, **kwargs):
    """The call as Keras runs it layer by layer (TracedModel's traced path off)."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    try:
        return model(*args, **kwargs)
    finally:
        tf.config.run_functions_eagerly(False)


def test_saves_loads_and_clones_as_a_traced_model(tmp_path):
    model = _block_model()
    x = _images()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is keras_igc.TracedModel
    assert_close(loaded(x), model(x), rel=1e-5)
    assert type(keras.models.clone_model(model)) is keras_igc.TracedModel


@pytest.mark.tensorflow_only
def test_the_networks_are_traced_models():
    assert type(keras_igc.applications.IGCNet20(weights=None)) is keras_igc.TracedModel
    host = MSGCResNet18(weights=None, input_shape=(32, 32, 3), classes=10)
    assert isinstance(host, keras_igc.TracedModel)


@pytest.mark.tensorflow_only
def test_an_eager_call_is_traced_once_and_gives_keras_own_values():
    model = _block_model(counter=True)
    x = _images()
    _CountsCalls.runs = 0
    first = model(x)  # eager
    assert _CountsCalls.runs == 1
    for _ in range(3):
        again = model(x)  # one trace, then the traced graph
    assert _CountsCalls.runs == 2
    assert_close(again, first, rel=1e-5)
    own = _keras_own_call(model, x)
    assert _CountsCalls.runs == 3
    assert_close(again, own, rel=1e-5)
    assert_close(first, model.predict_on_batch(x), rel=1e-5)
    # Another batch size reuses or generalises the trace; numpy and tensors alike.
    other = _images((3, 8, 8, 12), 1)
    assert_close(model(other), _keras_own_call(model, other), rel=1e-5)


@pytest.mark.tensorflow_only
def test_many_models_each_traced_once_log_no_retracing_warning():
    """TensorFlow counts the traces of every model's call together (one Python
    function); without the flag, the fifth model traced warned of retracing."""
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    try:
        x = _images()
        for _ in range(7):
            model = _block_model()
            model(x), model(x)  # eager, then traced
    finally:
        logger.removeHandler(handler)
    assert not [r for r in records if "retracing" in r.getMessage()]


@pytest.mark.tensorflow_only
def test_a_new_execution_form_or_int8_quantization_traces_again():
    model = _block_model(counter=True)
    x = _images()
    model(x)
    model(x)
    _CountsCalls.runs = 0
    layer = model.get_layer("igc")
    layer.set_execution_form(keras_igc.forms.choose(layer, "converter"))
    model(x)  # eager in the new state
    model(x)  # traced again
    model(x)
    assert _CountsCalls.runs == 2
    model.quantize("int8")
    model(x)
    quantized = model(x)
    assert _CountsCalls.runs == 4
    assert_close(quantized, _keras_own_call(model, x), rel=1e-5)


@pytest.mark.tensorflow_only
def test_training_symbolic_and_run_eagerly_calls_take_keras_path():
    import tensorflow as tf

    model = _block_model(counter=True)
    x = _images()
    _CountsCalls.runs = 0
    for _ in range(2):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x, training=True))
    assert _CountsCalls.runs == 2
    gradients = tape.gradient(loss, model.trainable_variables)
    assert all(gradient is not None for gradient in gradients)
    inputs = keras.Input((8, 8, 12))
    wrapped = keras.Model(inputs, model(inputs))
    assert_close(wrapped(x), model(x), rel=1e-5)
    model.compile(run_eagerly=True)
    _CountsCalls.runs = 0
    model(x)
    model(x)
    assert _CountsCalls.runs == 2


@pytest.mark.tensorflow_only
def test_an_msgc_hosts_mac_loss_is_a_value_after_an_eager_call():
    host = MSGCResNet18(
        weights=None, input_shape=(32, 32, 3), classes=10, mac_weight=1.0
    )
    x = _images((2, 32, 32, 3))
    host(x)
    host(x)  # traced
    traced = [float(loss) for loss in host.losses]
    _keras_own_call(host, x)
    # The traced graph's fused kernels round differently from Keras' own call.
    assert traced == pytest.approx([float(loss) for loss in host.losses], rel=1e-5)
    assert len(traced) == 1


@pytest.mark.tensorflow_only
def test_a_saved_model_holds_no_traced_call(tmp_path):
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    def functions(model, path):
        tf.saved_model.save(model, str(path))
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
        return len(proto.meta_graphs[0].graph_def.library.function)

    model = _block_model()
    before = functions(model, tmp_path / "before")
    model(_images())
    model(_images())  # traced
    assert functions(model, tmp_path / "after") == before

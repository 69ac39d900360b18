import keras
import numpy as np
import pytest
from harness import assert_close

import keras_igc
from keras_igc import export, inference_folding, keras_internals
from keras_igc.layers import FusedBatchNormalization


def _with_statistics(model, seed=0):
    """Moving statistics away from Keras' initial ones (mean 0, variance 1),
    so that a fold that ignored them would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(size=shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2, shape).astype("float32"))
            for weight in (layer.gamma, layer.beta):
                if weight is not None:
                    weight.assign(rng.normal(size=shape).astype("float32"))
    return model


def _network():
    """Each foldable convolution (with and without bias, grouped, depthwise
    with a multiplier, BatchNorm without scale or centre) and two that must
    not fold: one with an activation, one whose output is read twice."""
    inputs = keras.Input((8, 8, 6))
    x = keras.layers.Conv2D(8, 3, padding="same", name="full")(inputs)
    x = keras.layers.ReLU()(FusedBatchNormalization(name="full_bn")(x))
    x = keras_igc.GroupConv2D(8, 1, groups=2, use_bias=False, name="grouped")(x)
    x = FusedBatchNormalization(name="grouped_bn", scale=False)(x)
    x = keras.layers.DepthwiseConv2D(
        3, strides=2, depth_multiplier=2, use_bias=False, name="depthwise"
    )(x)
    x = keras.layers.ReLU(6.0)(
        FusedBatchNormalization(name="depthwise_bn", center=False)(x)
    )
    x = keras.layers.Conv2D(4, 1, activation="relu", name="activated")(x)
    x = keras.layers.BatchNormalization(name="activated_bn")(x)
    shared = keras.layers.Conv2D(4, 1, name="shared")(x)
    x = keras.layers.Add()(
        [keras.layers.BatchNormalization(name="shared_bn")(shared), shared]
    )
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    return _with_statistics(keras_igc.TracedModel(inputs, outputs))


def _images(seed=1):
    return np.random.default_rng(seed).normal(size=(4, 8, 8, 6)).astype("float32")


def _replaced(model):
    return {
        layer.name
        for layer in model.layers
        if id(layer)
        in inference_folding.folded_operations(
            keras_internals.graph_nodes(model), model.outputs
        )
    }


def test_the_pairs_that_fold_and_those_that_do_not():
    model = _network()
    assert _replaced(model) == {
        "full", "full_bn", "grouped", "grouped_bn", "depthwise", "depthwise_bn",
    }  # fmt: skip


def test_inference_equals_batch_norm_and_training_is_untouched():
    model = _network()
    plain = _with_statistics(keras_igc.TracedModel.from_config(model.get_config()))
    plain.set_weights(model.get_weights())
    plain.fold_batch_norm = False
    x = _images()
    expected = keras.ops.convert_to_numpy(plain.predict_on_batch(x))
    assert_close(model.predict_on_batch(x), expected, rel=1e-5)
    for _ in range(2):  # an eager call, then the traced one
        assert_close(model(x), expected, rel=1e-5)
    # Training normalises with the batch's statistics, as BatchNorm does.
    assert_close(model(x, training=True), plain(x, training=True), rel=1e-5)


@pytest.mark.tensorflow_only
def test_the_inference_graph_has_no_batch_norm_left_to_fuse():
    """On TensorFlow the folded pairs leave a convolution and a `BiasAdd`
    (which the graph optimizer fuses); training keeps BatchNorm's kernel."""
    import tensorflow as tf

    model = _network()
    spec = tf.TensorSpec((None, 8, 8, 6))

    def op_types(training):
        function = tf.function(lambda x: model(x, training=training))
        graph = function.get_concrete_function(spec).graph
        return [op.type for op in graph.get_operations()]

    inference, training = op_types(False), op_types(True)
    assert inference.count("FusedBatchNormV3") == 0
    assert inference.count("BiasAdd") >= 3
    assert training.count("FusedBatchNormV3") == 3  # the three fused layers
    model.fold_batch_norm = False
    assert op_types(False).count("FusedBatchNormV3") == 3


def test_mixed_precision_and_quantized_layers_do_not_fold():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = _network()
    finally:
        keras.config.set_dtype_policy("float32")
    assert _replaced(mixed) == set()
    quantized = _network()
    # keras_igc's grouped convolution stores an int8 kernel (Keras' Conv2D
    # has no `quantize`).
    quantized.get_layer("grouped").quantize("int8")
    assert "grouped" not in _replaced(quantized)
    assert "full" in _replaced(quantized)


def test_export_clones_keep_their_own_graph_and_a_reloaded_model_folds(tmp_path):
    """An export clone's graph is the one `export.prepare` made (BatchNorm
    kept with `fold=False`); `fold_batch_norm` is not saved, so a reloaded
    network folds as a built one does."""
    model = _network()
    clone, _ = export.prepare(model, fold=False)
    assert clone.fold_batch_norm is False
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in clone.layers)
    assert_close(clone(_images()), model.predict_on_batch(_images()), rel=1e-5)
    # A saved and reloaded network folds again.
    path = tmp_path / "model.keras"
    model.save(path)
    assert keras.saving.load_model(path).fold_batch_norm is True

"""FusedBatchNormalization against Keras' BatchNormalization, on every backend,
and TensorFlow's fused kernel where it applies."""

import keras
import numpy as np
import pytest
from harness import assert_close, assert_round_trip

from keras_igc import FusedBatchNormalization


def _data(batch=8, shape=(5, 5, 3)):
    return np.random.RandomState(0).randn(batch, *shape).astype("float32") * 3 + 1


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _pair(x, **kwargs):
    fused = FusedBatchNormalization(**kwargs)
    plain = keras.layers.BatchNormalization(**kwargs)
    for layer in (fused, plain):
        layer.build(x.shape)
        channels = x.shape[layer.axis]
        if layer.scale:
            layer.gamma.assign(np.linspace(0.5, 2.0, channels).astype("float32"))
        if layer.center:
            layer.beta.assign(np.linspace(-0.3, 0.3, channels).astype("float32"))
    return fused, plain


def _gradient(layer, x):
    """d sum(y^3) / dx in training, on any backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) ** 3)
        return tape.gradient(loss, x).numpy()
    if backend == "jax":
        import jax

        def loss(x):
            return (layer.stateless_call(
                [v.value for v in layer.trainable_variables],
                [v.value for v in layer.non_trainable_variables],
                x, training=True,
            )[0] ** 3).sum()  # fmt: skip

        return np.asarray(jax.grad(loss)(x))
    import torch

    x = torch.tensor(x, requires_grad=True)
    (layer(x, training=True) ** 3).sum().backward()
    return x.grad.numpy()


@pytest.mark.parametrize(
    "kwargs",
    [dict(momentum=0.5, epsilon=2e-5), dict(center=False), dict(scale=False)],
    ids=["scale+center", "no center", "no scale"],
)
def test_computes_what_batch_normalization_computes(kwargs):
    x = _data()
    fused, plain = _pair(x, **kwargs)
    assert_close(
        _numpy(fused(x, training=True)), _numpy(plain(x, training=True)), rel=1e-5
    )
    # Keras' moving variance follows the biased variance; the kernel returns
    # the unbiased one, which would be 8*25/(8*25-1) too large.
    for a, b in zip(fused.weights, plain.weights, strict=True):
        np.testing.assert_allclose(_numpy(a), _numpy(b), rtol=1e-6, atol=1e-6)
    assert_close(_gradient(fused, x), _gradient(plain, x), rel=1e-4)
    assert_close(_numpy(fused(x)), _numpy(plain(x)), rel=1e-5)


def test_tensorflow_runs_the_fused_kernel():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the fused kernel is TensorFlow's; other backends run Keras' ops")
    import tensorflow as tf

    def ops_of(training, shape=(8, 5, 5, 3), **kwargs):
        layer = FusedBatchNormalization(**kwargs)
        layer.build(shape)
        graph = (
            tf.function(lambda x: layer(x, training=training))
            .get_concrete_function(tf.TensorSpec(shape, "float32"))
            .graph
        )
        return {op.type for op in graph.get_operations()}

    assert "FusedBatchNormV3" in ops_of(True)
    # At inference too: one op that Grappler folds into the convolution before.
    assert "FusedBatchNormV3" in ops_of(False)
    # Where the kernel does not apply, Keras' computation runs: 2D inputs,
    # `fused=False`.
    assert "FusedBatchNormV3" not in ops_of(True, shape=(8, 3))
    assert "FusedBatchNormV3" not in ops_of(True, fused=False)


def test_where_the_kernel_does_not_apply_keras_computes():
    x = _data(shape=(3,))  # 2D: Keras' own computation
    fused, plain = _pair(x, momentum=0.0)
    assert_close(
        _numpy(fused(x, training=True)), _numpy(plain(x, training=True)), rel=1e-5
    )
    x = _data()
    fused, plain = _pair(x, axis=1)  # not the channel axis last
    assert_close(
        _numpy(fused(x, training=True)), _numpy(plain(x, training=True)), rel=1e-5
    )


def test_a_bad_fused_value_is_named():
    with pytest.raises(ValueError, match="None.*False.*fused=True"):
        FusedBatchNormalization(fused=True)


def test_in_a_model_that_trains_saves_and_loads_as_plain_batch_norm(tmp_path):
    inputs = keras.Input((5, 5, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = FusedBatchNormalization(name="bn")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    model.fit(_data(), np.zeros((8, 2), "float32"), batch_size=8, verbose=0)
    loaded = assert_round_trip(model, _data(), tmp_path, rel=1e-5)
    assert type(loaded.get_layer("bn")) is FusedBatchNormalization
    # Its weights are a plain BatchNormalization's.
    plain = keras.layers.BatchNormalization()
    plain.build((None, 3, 3, 4))
    plain.set_weights(loaded.get_layer("bn").get_weights())

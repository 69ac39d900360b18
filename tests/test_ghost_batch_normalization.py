"""GhostBatchNormalization against Keras' BatchNormalization, on every backend."""

import keras
import numpy as np
import pytest
from harness import assert_close, assert_round_trip

from keras_igc import GhostBatchNormalization


def _data(batch=8):
    return np.random.RandomState(0).randn(batch, 5, 5, 3).astype("float32") * 3 + 1


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_one_group_is_batch_normalization():
    x = _data()
    ghost = GhostBatchNormalization(virtual_batch_size=8, momentum=0.5, epsilon=1e-3)
    plain = keras.layers.BatchNormalization(momentum=0.5, epsilon=1e-3)
    for layer in (ghost, plain):
        layer.build(x.shape)
        layer.gamma.assign(np.array([1.5, 0.5, 2.0], "float32"))
        layer.beta.assign(np.array([0.1, -0.2, 0.3], "float32"))
    assert_close(
        _numpy(ghost(x, training=True)), _numpy(plain(x, training=True)), rel=1e-5
    )
    for a, b in zip(ghost.weights, plain.weights, strict=True):
        np.testing.assert_allclose(_numpy(a), _numpy(b), rtol=1e-5, atol=1e-6)
    assert_close(_numpy(ghost(x)), _numpy(plain(x)), rel=1e-5)


def test_each_group_is_normalised_by_its_own_statistics():
    x = _data()
    ghost = GhostBatchNormalization(virtual_batch_size=4, momentum=0.0)
    y = _numpy(ghost(x, training=True))
    for group in (slice(0, 4), slice(4, 8)):
        reference = keras.layers.BatchNormalization(momentum=0.0)
        assert_close(y[group], _numpy(reference(x[group], training=True)), rel=1e-5)
    # The moving statistics follow the mean over the groups.
    means = [x[g].mean(axis=(0, 1, 2)) for g in (slice(0, 4), slice(4, 8))]
    variances = [x[g].var(axis=(0, 1, 2)) for g in (slice(0, 4), slice(4, 8))]
    np.testing.assert_allclose(_numpy(ghost.moving_mean), np.mean(means, 0), rtol=1e-5)
    np.testing.assert_allclose(
        _numpy(ghost.moving_variance), np.mean(variances, 0), rtol=1e-5
    )


def test_config_round_trip_and_a_batch_that_does_not_split():
    layer = GhostBatchNormalization(virtual_batch_size=4, momentum=0.9, name="gbn")
    restored = GhostBatchNormalization.from_config(layer.get_config())
    assert restored.virtual_batch_size == 4 and restored.momentum == 0.9
    with pytest.raises(ValueError, match="batch of 6 .*virtual_batch_size=4"):
        layer(_data(6), training=True)
    with pytest.raises(ValueError, match="virtual_batch_size.*0"):
        GhostBatchNormalization(virtual_batch_size=0)


def test_in_a_model_that_trains_and_saves(tmp_path):
    inputs = keras.Input((5, 5, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = GhostBatchNormalization(virtual_batch_size=4, name="gbn")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    model.fit(_data(), np.zeros((8, 2), "float32"), batch_size=8, verbose=0)
    loaded = assert_round_trip(model, _data(), tmp_path, rel=1e-5)
    assert loaded.get_layer("gbn").virtual_batch_size == 4

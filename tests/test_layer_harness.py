"""Every public layer through Keras' own layer test harness, on every backend.

`keras.src.testing.TestCase.run_layer_test` is what Keras runs on its own
layers: config round trip, symbolic and eager calls against
`compute_output_shape`, weight counts, a training step through `fit`,
`.keras` saving, and a mixed-precision call.
"""

import keras
import pytest
from keras.src.testing import TestCase

import keras_igc

LAYERS = {
    "IGCConv2D": dict(
        init_kwargs=dict(primary_partitions=4, secondary_partitions=2, kernel_size=3,
                         padding="same", use_bias=False),
        input_shape=(2, 6, 6, 8), expected_output_shape=(2, 6, 6, 8),
        expected_num_trainable_weights=2,
    ),
    "IGCV2Conv2D": dict(
        init_kwargs=dict(partitions=[2, 4], kernel_size=3, padding="same"),
        input_shape=(2, 6, 6, 8), expected_output_shape=(2, 6, 6, 8),
        expected_num_trainable_weights=4,
    ),
    "GroupConv2D": dict(
        init_kwargs=dict(filters=8, kernel_size=3, groups=4, padding="same"),
        input_shape=(2, 6, 6, 8), expected_output_shape=(2, 6, 6, 8),
        expected_num_trainable_weights=2,
    ),
    "ChannelShuffle": dict(
        init_kwargs=dict(groups=2), input_shape=(2, 4, 4, 6),
        expected_output_shape=(2, 4, 4, 6), expected_num_trainable_weights=0,
        run_training_check=False,  # nothing to train
    ),
    "GumbelSigmoidGate": dict(
        init_kwargs=dict(seed=1), input_shape=(2, 4, 6),
        expected_output_shape=(2, 4, 6), expected_num_trainable_weights=0,
        expected_num_seed_generators=1, run_training_check=False,
    ),
    "MaskGenerator": dict(
        init_kwargs=dict(heads=4, channels=6), input_shape=(2, 5, 5, 8),
        expected_output_shape=(2, 4, 6), expected_num_trainable_weights=5,
        expected_num_non_trainable_weights=2,
    ),
    "FusedBatchNormalization": dict(
        init_kwargs=dict(momentum=0.5), input_shape=(4, 3, 3, 5),
        expected_output_shape=(4, 3, 3, 5), expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=2,
    ),
    "GhostBatchNormalization": dict(
        init_kwargs=dict(virtual_batch_size=2), input_shape=(4, 3, 3, 5),
        expected_output_shape=(4, 3, 3, 5), expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=2,
    ),
}  # fmt: skip


class _Harness(TestCase):
    def runTest(self):  # unittest needs one; the tests call the harness directly
        pass


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_public_layer_passes_keras_run_layer_test(name):
    harness = _Harness()
    harness.setUp()
    try:
        harness.run_layer_test(getattr(keras_igc, name), **LAYERS[name])
    finally:
        keras.config.set_dtype_policy("float32")


def test_msgc_conv2d_passes_keras_run_layer_test():
    # Two outputs: the feature map and the gates the heads used.
    harness = _Harness()
    harness.setUp()
    harness.run_layer_test(
        keras_igc.MSGCConv2D,
        init_kwargs=dict(filters=8, kernel_size=3, heads=4, seed=1),
        input_shape=(2, 6, 6, 4),
        expected_output_shape=[(2, 6, 6, 8), (2, 4, 4)],
        expected_num_trainable_weights=6,
        expected_num_non_trainable_weights=2,
        expected_num_seed_generators=1,
        run_training_check=False,  # a list output: fit needs a model around it
    )
    keras.config.set_dtype_policy("float32")


def test_mac_regularizer_passes_keras_run_layer_test():
    import numpy as np

    harness = _Harness()
    harness.setUp()
    harness.run_layer_test(
        keras_igc.MACRegularizer,
        init_kwargs=dict(
            dense_macs=1000.0,
            static_macs=10.0,
            convolutions=[{"macs": 900.0, "heads": 2}],
            bonuses=[{"reader": 0, "upstream_macs": 50.0}],
        ),  # fmt: skip
        input_data=[np.ones((2, 3), "float32"), np.ones((2, 2, 4), "float32")],
        expected_output_shape=(2, 3),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=3,
        expected_num_losses=1,
        run_training_check=False,  # nothing to train
    )
    keras.config.set_dtype_policy("float32")


def test_every_public_layer_is_in_the_harness():
    """A new layer of keras_igc.layers joins the harness, or this fails."""
    tested = set(LAYERS) | {"MSGCConv2D", "MACRegularizer"}
    assert set(keras_igc.layers.__all__) == tested

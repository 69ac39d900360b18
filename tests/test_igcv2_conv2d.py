"""IGCV2Conv2D: the chain against an independent NumPy product, the
complementary condition, and its counts."""

import itertools

import keras
import numpy as np
import pytest
import reference
from harness import assert_round_trip, numpy

from keras_igc import IGCV2Conv2D
from keras_igc.complexity import igcv2_params, model_complexity


@pytest.mark.parametrize(
    "channels, partitions",
    [(64, (8, 8)), (64, (16, 16, 16)), (24, (6, 4)), (12, (1,)), (16, (8, 8, 8, 8))],
)
def test_the_dense_equivalent_kernel_is_the_chains_product(channels, partitions):
    layer = IGCV2Conv2D(partitions, 3, padding="same", use_bias=True,
                        bias_initializer="random_normal")  # fmt: skip
    x = np.random.default_rng(0).normal(size=(2, 5, 5, channels)).astype("float32")
    y = numpy(layer(x))
    expected_kernel = reference.igcv2_dense_kernel(
        numpy(layer.depthwise.kernel),
        [numpy(conv.kernel) for conv in layer.pointwise],
        partitions,
    )
    np.testing.assert_allclose(
        numpy(layer.dense_equivalent_kernel()), expected_kernel, rtol=1e-5, atol=1e-6
    )
    bias = numpy(layer.pointwise[-1].bias) @ reference.shuffle_matrix(
        channels, partitions[-1]
    )
    expected = reference.conv2d(x, expected_kernel, padding="same") + bias
    scale = np.abs(expected).max()
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize(
    "channels, partitions", [(64, (8, 8)), (64, (32, 16, 8)), (36, (6, 6)), (8, (1,))]
)
def test_every_input_reaches_every_output_exactly_once(channels, partitions):
    counts = reference.igcv2_path_counts(channels, partitions)
    np.testing.assert_array_equal(counts, np.ones((channels, channels)))
    IGCV2Conv2D(partitions).build((None, 4, 4, channels))  # accepted


@pytest.mark.parametrize(
    "partitions, message",
    [
        (
            (8, 4),
            r"partitions=\(8, 4\) on 64 channels.*8 x 16 = 128.*more than one "
            r"path.*For example partitions=\(8, 8\)",
        ),
        (
            (16, 16),
            r"4 x 4 = 16 channels give no path.*multiply to 64.*"
            r"partitions=\(8, 8\)",
        ),
        ((3, 8), r"cannot split 64 channels into partitions=3 .*\[1, 2, 4, 8, 16, "),
    ],
)
def test_a_broken_condition_names_the_partitions_and_a_fix(partitions, message):
    with pytest.raises(ValueError, match=message):
        IGCV2Conv2D(partitions)(np.zeros((1, 4, 4, 64), "float32"))


def test_the_condition_the_layer_checks_is_the_path_count():
    """For every chain of two or three partition counts dividing 16, the
    layer accepts it exactly when each input-output pair has one path."""
    divisors = [1, 2, 4, 8, 16]
    for length in (2, 3):
        for partitions in itertools.product(divisors, repeat=length):
            counts = reference.igcv2_path_counts(16, partitions)
            exact = bool((counts == 1).all())
            try:
                IGCV2Conv2D(partitions).build((None, 4, 4, 16))
                accepted = True
            except ValueError:
                accepted = False
            assert accepted == exact, partitions


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"partitions": 8}, "list or tuple of partition counts.*partitions=8"),
        ({"partitions": ()}, r"at least one pointwise.*partitions=\(\)"),
        ({"partitions": (4, 0)}, "`partitions` must be a positive integer.*=0"),
        ({"partitions": (4,), "activation": "relu"}, "no `activation`"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IGCV2Conv2D(**kwargs)


def test_counts_and_round_trip(tmp_path):
    model = keras.Sequential([
        keras.Input((8, 8, 64)),
        IGCV2Conv2D((8, 8), 3, padding="same", use_bias=False),
    ])  # fmt: skip
    assert model.count_params() == igcv2_params(64, (8, 8)) == 9 * 64 + 2 * 64 * 8
    counts = model_complexity(model)
    assert counts["conv_params"] == 1600 and counts["macs"] == 1600 * 64
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 64)).astype("float32")
    assert_round_trip(model, x, tmp_path)

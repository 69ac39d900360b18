import keras
import numpy as np
import pytest
from harness import assert_round_trip

import keras_igc


@pytest.mark.parametrize("channels, groups", [(6, 2), (6, 3), (12, 4), (5, 1), (5, 5)])
def test_output_channel_j_times_groups_plus_g_is_channel_j_of_group_g(channels, groups):
    x = np.random.default_rng(0).normal(size=(2, 3, 3, channels)).astype("float32")
    out = keras.ops.convert_to_numpy(keras_igc.ChannelShuffle(groups)(x))
    per_group = channels // groups
    for g in range(groups):
        for j in range(per_group):
            np.testing.assert_array_equal(
                out[..., j * groups + g], x[..., g * per_group + j]
            )


@pytest.mark.parametrize("L, M", [(4, 3), (24, 2), (1, 5), (7, 1)])
def test_shuffle_by_m_inverts_shuffle_by_l(L, M):
    x = np.random.default_rng(1).normal(size=(2, L * M)).astype("float32")
    forward = keras_igc.ChannelShuffle(L)
    inverse = keras_igc.ChannelShuffle(M)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(inverse(forward(x))), x)
    assert sorted(forward.permutation) == list(range(L * M))


def test_documented_example():
    x = keras.ops.reshape(keras.ops.arange(6, dtype="float32"), (1, 6))
    out = keras_igc.ChannelShuffle(groups=2)(x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), [[0, 3, 1, 4, 2, 5]])


def test_round_trips_through_config_and_keras_file(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 6)), keras_igc.ChannelShuffle(3)])
    x = np.random.default_rng(2).normal(size=(1, 4, 4, 6)).astype("float32")
    loaded = assert_round_trip(model, x, tmp_path)
    assert loaded.layers[0].get_config()["groups"] == 3


@pytest.mark.parametrize("groups", [0, -2, 1.5, "2", True])
def test_bad_groups(groups):
    with pytest.raises(ValueError, match=f"groups={groups!r}"):
        keras_igc.ChannelShuffle(groups)


def test_channels_must_divide_into_groups():
    with pytest.raises(ValueError, match="7 channels into groups=2"):
        keras_igc.ChannelShuffle(2).build((None, 7))

import keras
import numpy as np
import pytest
import reference
from harness import assert_close, assert_round_trip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_igc
from keras_igc import ops as igc_ops


def grouped_reference(x, kernel, groups, strides, padding, dilation):
    """Grouped convolution from its definition: one dense convolution per group."""
    k, n = kernel.shape[2], kernel.shape[3] // groups
    return np.concatenate(
        [
            reference.conv2d(
                np.asarray(x, np.float64)[..., g * k : (g + 1) * k],
                np.asarray(kernel, np.float64)[..., g * n : (g + 1) * n],
                strides,
                padding,
                dilation,
            )
            for g in range(groups)
        ],
        axis=-1,
    )


@st.composite
def grouped_cases(draw):
    groups = draw(st.integers(1, 4))
    k, n = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.integers(1, 2))
    dilation = 1 if stride > 1 else draw(st.integers(1, 2))
    return dict(
        groups=groups,
        channels=groups * k,
        filters=groups * n,
        kernel=kernel,
        strides=(stride, stride),
        dilation=(dilation, dilation),
        padding=draw(st.sampled_from(["valid", "same"])),
    )


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(grouped_cases())
def test_every_grouped_path_matches_the_definition(case):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 6, case["channels"])).astype("float32")
    kernel = rng.normal(
        size=case["kernel"] + (case["channels"] // case["groups"], case["filters"])
    ).astype("float32")
    expected = grouped_reference(
        x, kernel, case["groups"], case["strides"], case["padding"], case["dilation"]
    )
    for name, path in igc_ops.GROUPED_CONVOLUTIONS.items():
        got = path(
            x,
            kernel,
            case["groups"],
            strides=case["strides"],
            padding=case["padding"],
            dilation_rate=case["dilation"],
        )
        assert_close(keras.ops.convert_to_numpy(got), expected, rel=1e-4, err_msg=name)


@pytest.mark.parametrize(
    "filters, kernel_size, groups, strides",
    [(64, 1, 4, 2), (12, 3, 3, 1), (8, 3, 8, 2)],
)
def test_same_weights_config_and_outputs_as_conv2d(
    filters, kernel_size, groups, strides
):
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 24)).astype("float32")
    args = dict(
        filters=filters, kernel_size=kernel_size, groups=groups, strides=strides
    )
    plain = keras.layers.Conv2D(padding="same", **args)
    ours = keras_igc.GroupConv2D(padding="same", **args)
    plain.build(x.shape)
    ours.build(x.shape)
    ours.set_weights(plain.get_weights())
    assert [w.shape for w in ours.weights] == [w.shape for w in plain.weights]
    assert {k: v for k, v in ours.get_config().items() if k != "name"} == {
        k: v for k, v in plain.get_config().items() if k != "name"
    }
    assert_close(
        keras.ops.convert_to_numpy(ours(x)),
        keras.ops.convert_to_numpy(plain(x)),
        rel=1e-4,
    )


def test_keras_file_round_trip(tmp_path):
    model = keras.Sequential(
        [keras.Input((8, 8, 8)), keras_igc.GroupConv2D(16, 1, strides=2, groups=4)]
    )
    x = np.random.default_rng(2).normal(size=(1, 8, 8, 8)).astype("float32")
    loaded = assert_round_trip(model, x, tmp_path)
    assert isinstance(loaded.layers[0], keras_igc.GroupConv2D)


def test_bad_groups_keep_the_conv2d_error():
    with pytest.raises(ValueError, match="groups"):
        keras_igc.GroupConv2D(10, 1, groups=4)


@pytest.mark.parametrize("factor", [1, 2, 3, 6])
def test_merged_groups_kernel_is_the_same_convolution(factor):
    """Fewer, wider groups with zeros between the merged ones: same outputs."""
    rng = np.random.default_rng(3)
    groups, k, n = 6, 2, 3
    x = rng.normal(size=(2, 7, 7, groups * k)).astype("float32")
    kernel = rng.normal(size=(3, 3, k, groups * n)).astype("float32")
    merged = keras.ops.convert_to_numpy(
        igc_ops.merged_groups_kernel(kernel, groups, factor)
    )
    assert merged.shape == (3, 3, factor * k, groups * n)
    expected = grouped_reference(x, kernel, groups, (1, 1), "same", (1, 1))
    got = grouped_reference(x, merged, groups // factor, (1, 1), "same", (1, 1))
    assert_close(got, expected, rel=1e-5)


@pytest.mark.parametrize("implementation", keras_igc.IMPLEMENTATIONS)
def test_each_implementation_gives_conv2d_outputs(implementation):
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 12)).astype("float32")
    plain = keras.layers.Conv2D(6, 3, groups=3, padding="same")
    ours = keras_igc.GroupConv2D(
        6, 3, groups=3, padding="same", implementation=implementation
    )
    plain.build(x.shape)
    ours.build(x.shape)
    ours.set_weights(plain.get_weights())
    expected = "grouped" if implementation == "auto" else implementation
    if implementation != "auto":
        assert ours.active_implementation == expected
    assert_close(
        keras.ops.convert_to_numpy(ours(x)),
        keras.ops.convert_to_numpy(plain(x)),
        rel=1e-4,
    )


def test_implementation_is_saved_only_when_chosen(tmp_path):
    """The default config stays Conv2D's; a chosen path survives a reload."""
    assert "implementation" not in keras_igc.GroupConv2D(8, 1, groups=2).get_config()
    layer = keras_igc.GroupConv2D(8, 1, groups=2, implementation="dense")
    assert layer.get_config()["implementation"] == "dense"
    model = keras.Sequential([keras.Input((4, 4, 4)), layer])
    x = np.random.default_rng(5).normal(size=(1, 4, 4, 4)).astype("float32")
    loaded = assert_round_trip(model, x, tmp_path)
    assert loaded.layers[0].implementation == "dense"
    assert loaded.layers[0].active_implementation == "dense"


def test_bad_implementation_is_named():
    with pytest.raises(ValueError, match="implementation='sparse'"):
        keras_igc.GroupConv2D(8, 1, groups=2, implementation="sparse")
    with pytest.raises(ValueError, match=r"strides=\(1, 2\)"):
        keras_igc.GroupConv2D(
            8, 3, groups=2, strides=(1, 2), implementation="depthwise"
        )

import dataclasses

import keras
import numpy as np
import pytest
import reference
from harness import assert_close, assert_round_trip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_igc
from keras_igc.complexity import igc_params

PATHS = list(keras_igc.forms.PATHS)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def make_layer(L, M, input_shape, implementation="grouped", seed=0, **kwargs):
    """A built layer with random weights (random bias too, so it is tested)."""
    layer = keras_igc.IGCConv2D(
        L,
        M,
        implementation=implementation,
        bias_initializer="random_normal",
        **kwargs,
    )
    layer.build(input_shape)
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    return layer


def twin(layer, implementation, input_shape):
    """The same layer and weights, computed through another implementation."""
    other = keras_igc.IGCConv2D.from_config(
        {**layer.get_config(), "implementation": implementation}
    )
    other.build(input_shape)
    other.set_weights(layer.get_weights())
    return other


@st.composite
def block_cases(draw):
    L = draw(st.integers(1, 4))
    M = draw(st.integers(1, 4))
    K = draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilated = draw(st.booleans())
    strides = (1, 1) if dilated else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilated else (1, 1)
    padding = draw(st.sampled_from(["valid", "same"]))
    min_h = (kernel[0] - 1) * dilation[0] + 1
    min_w = (kernel[1] - 1) * dilation[1] + 1
    height = draw(st.integers(min_h, min_h + 5))
    width = draw(st.integers(min_w, min_w + 5))
    batch = draw(st.integers(1, 2))
    return dict(
        L=L,
        M=M,
        kernel_size=kernel,
        strides=strides,
        dilation_rate=dilation,
        padding=padding,
        input_shape=(batch, height, width, L * K),
        use_bias=draw(st.booleans()),
    )


@settings(
    # JAX compiles every new shape eagerly (minutes for 30); TensorFlow runs
    # the full 30, and the paths are backend-independent keras.ops code.
    max_examples=30 if keras.backend.backend() == "tensorflow" else 12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(block_cases())
def test_every_implementation_matches_the_paper_definition(case):
    shape = case.pop("input_shape")
    L, M = case.pop("L"), case.pop("M")
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    layer = make_layer(L, M, shape, **case)
    weights = layer.get_weights()
    expected = reference.igc(
        x,
        weights[0],
        weights[1],
        weights[2] if case["use_bias"] else None,
        L,
        M,
        case["strides"],
        case["padding"],
        case["dilation_rate"],
    )
    for path in PATHS:
        if path == "depthwise" and case["strides"][0] != case["strides"][1]:
            continue  # refused at construction; see test_bad_arguments_name_the_value
        other = twin(layer, path, shape)
        got = to_numpy(other(x))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=path)
        assert other.compute_output_shape(shape) == expected.shape
        if path != "dense":  # the secondary's other form (narrow blocks: dense)
            form = dataclasses.replace(other.execution_form, secondary="grouped")
            other.set_execution_form(form)
            got = to_numpy(other(x))
            np.testing.assert_allclose(
                got,
                expected,
                rtol=1e-4,
                atol=1e-4,
                err_msg=f"{path}, grouped secondary",
            )


@pytest.mark.parametrize(
    "L, M, channels, kwargs",
    [
        (4, 3, 12, dict(kernel_size=3, padding="same")),
        (3, 2, 9, dict(kernel_size=(3, 1), strides=2)),
        (2, 4, 4, dict(kernel_size=3, dilation_rate=2, padding="same")),
    ],
)
def test_dense_equivalent_kernel_reproduces_the_block(L, M, channels, kwargs):
    x = np.random.default_rng(2).normal(size=(2, 9, 8, channels)).astype("float32")
    layer = make_layer(L, M, x.shape, **kwargs)
    kernel = layer.dense_equivalent_kernel()
    assert tuple(kernel.shape) == layer.kernel_size + (channels, L * M)
    dense = keras.ops.conv(
        x,
        kernel,
        strides=layer.strides,
        padding=layer.padding,
        dilation_rate=layer.dilation_rate,
    )
    dense = dense + layer.dense_equivalent_bias()
    assert_close(to_numpy(dense), to_numpy(layer(x)), rel=1e-4)


def test_one_primary_partition_is_a_regular_conv_then_a_per_channel_scale():
    M = 5
    x = np.random.default_rng(3).normal(size=(2, 7, 7, 3)).astype("float32")
    layer = make_layer(1, M, x.shape, padding="same", use_bias=False)
    primary_kernel, secondary_kernel = layer.get_weights()
    regular = keras.layers.Conv2D(M, 3, padding="same", use_bias=False)
    regular.build(x.shape)
    regular.set_weights([primary_kernel])
    scale = keras.layers.DepthwiseConv2D(1, use_bias=False)
    scale.build(x.shape[:3] + (M,))
    scale.set_weights([secondary_kernel.reshape(1, 1, M, 1)])
    assert_close(to_numpy(layer(x)), to_numpy(scale(regular(x))), rel=1e-5)


def test_one_secondary_partition_is_depthwise_then_pointwise():
    L = 6
    x = np.random.default_rng(4).normal(size=(2, 7, 7, L)).astype("float32")
    layer = make_layer(L, 1, x.shape, padding="same", use_bias=True)
    primary_kernel, secondary_kernel, bias = layer.get_weights()
    separable = keras.layers.SeparableConv2D(L, 3, padding="same")
    separable.build(x.shape)
    separable.set_weights([primary_kernel.reshape(3, 3, L, 1), secondary_kernel, bias])
    assert_close(to_numpy(layer(x)), to_numpy(separable(x)), rel=1e-5)


@pytest.mark.parametrize(
    "L, M, kernel_size, channels, use_bias",
    [
        (24, 2, 3, 48, False),
        (4, 8, 3, 32, True),
        (3, 5, (3, 1), 6, False),
        (1, 7, 5, 4, True),
        (7, 1, 3, 7, False),
    ],
)
def test_parameter_count_is_the_paper_formula(L, M, kernel_size, channels, use_bias):
    layer = keras_igc.IGCConv2D(L, M, kernel_size, use_bias=use_bias)
    layer.build((None, 16, 16, channels))
    expected = igc_params(L, M, kernel_size, channels, use_bias)
    assert layer.count_params() == expected
    if channels == L * M:
        area = np.prod(layer.kernel_size)
        assert expected == L * M * M * area + M * L * L + (L * M if use_bias else 0)


def test_config_round_trip():
    layer = keras_igc.IGCConv2D(
        4,
        2,
        (3, 1),
        strides=2,
        padding="same",
        use_bias=False,
        implementation="split",
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(1e-4),
        name="block",
    )
    config = layer.get_config()
    clone = keras_igc.IGCConv2D.from_config(config)
    assert clone.get_config() == config
    assert (
        keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer)
        ).get_config()
        == config
    )


def small_sequential():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(8, 3, padding="same"),
            keras_igc.IGCConv2D(4, 2, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras_igc.IGCConv2D(2, 8, 3, strides=2, padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )


def small_functional():
    inputs = keras.Input((8, 8, 6))
    x = keras_igc.IGCConv2D(3, 2, 3, padding="same")(inputs)
    y = keras_igc.IGCConv2D(3, 2, 1, implementation="dense")(inputs)
    outputs = keras.layers.Add()([x, y])
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("build", [small_sequential, small_functional])
def test_keras_file_round_trip_in_safe_mode(build, tmp_path):
    model = build()
    x = np.random.default_rng(5).normal(size=(2,) + model.input_shape[1:])
    x = x.astype("float32")
    assert_round_trip(model, x, tmp_path)


GRADIENT_CASES = [
    # L, M, input channels, kwargs
    (3, 2, 6, dict(kernel_size=3, strides=2, padding="same")),
    (2, 3, 4, dict(kernel_size=(3, 2), padding="valid")),
    (4, 1, 8, dict(kernel_size=3, dilation_rate=2, padding="same")),
    (1, 4, 3, dict(kernel_size=1)),
]


@pytest.mark.parametrize("L, M, channels, kwargs", GRADIENT_CASES)
@pytest.mark.parametrize("path", PATHS)
def test_gradients_match_the_keras_composition(path, L, M, channels, kwargs):
    """One SGD step with lr=1 moves each weight by exactly its gradient."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 7, 7, channels)).astype("float32")
    probe = keras_igc.IGCConv2D(L, M, **kwargs)
    y_shape = probe.compute_output_shape(x.shape)
    y = rng.normal(size=y_shape).astype("float32")
    probe.build(x.shape)
    initial = [rng.normal(size=w.shape).astype("float32") for w in probe.get_weights()]

    def trained(layers):
        model = keras.Sequential([keras.Input(x.shape[1:]), *layers])
        model.set_weights(initial)
        model.compile(keras.optimizers.SGD(1.0), "mse")
        model.train_on_batch(x, y)
        return model.get_weights()

    igc = [keras_igc.IGCConv2D(L, M, implementation=path, **kwargs)]
    # The definition in plain Keras layers: weights in the same order.
    composition = [
        keras.layers.Conv2D(L * M, groups=L, use_bias=False, **kwargs),
        keras_igc.ChannelShuffle(L),
        keras.layers.Conv2D(L * M, 1, groups=M),
        keras_igc.ChannelShuffle(M),
    ]
    for got, want in zip(trained(igc), trained(composition), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_fit_reduces_the_loss():
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int32")
    model = small_sequential()
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("path", PATHS)
def test_mixed_precision(policy, path):
    x = np.random.default_rng(8).normal(size=(2, 8, 8, 8)).astype("float32")
    full = make_layer(4, 2, x.shape, padding="same")
    mixed = keras_igc.IGCConv2D(4, 2, padding="same", implementation=path, dtype=policy)
    mixed.build(x.shape)
    mixed.set_weights(full.get_weights())
    out = mixed(x)
    assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
    assert all(v.dtype == "float32" for v in mixed.weights)
    np.testing.assert_allclose(
        to_numpy(keras.ops.cast(out, "float32")), to_numpy(full(x)), rtol=0.05, atol=0.1
    )


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(primary_partitions=0, secondary_partitions=2), "primary_partitions=0"),
        (
            dict(primary_partitions=2.5, secondary_partitions=2),
            "primary_partitions=2.5",
        ),
        (
            dict(primary_partitions=2, secondary_partitions=-1),
            "secondary_partitions=-1",
        ),
        (
            dict(primary_partitions=True, secondary_partitions=2),
            "primary_partitions=True",
        ),
        (
            dict(primary_partitions=2, secondary_partitions=2, kernel_size=0),
            "kernel_size=0",
        ),
        (
            dict(primary_partitions=2, secondary_partitions=2, strides=(1, 2, 3)),
            "strides=(1, 2, 3)",
        ),
        (
            dict(primary_partitions=2, secondary_partitions=2, padding="causal"),
            "padding='causal'",
        ),
        (
            dict(
                primary_partitions=2, secondary_partitions=2, strides=2, dilation_rate=2
            ),
            "strides=2, dilation_rate=2",
        ),
        (
            dict(
                primary_partitions=2,
                secondary_partitions=2,
                data_format="channels_first",
            ),
            "'channels_first'",
        ),
        (
            dict(primary_partitions=2, secondary_partitions=2, implementation="xla"),
            "implementation='xla'",
        ),
        (
            dict(
                primary_partitions=2,
                secondary_partitions=2,
                strides=(1, 2),
                implementation="depthwise",
            ),
            "strides=(1, 2)",
        ),
        (
            dict(primary_partitions=2, secondary_partitions=2, activation="relu"),
            "activation='relu'",
        ),
    ],
)
def test_bad_arguments_name_the_value(kwargs, fragment):
    with pytest.raises(
        ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")
    ):
        keras_igc.IGCConv2D(**kwargs)


def test_input_width_must_split_into_primary_partitions():
    layer = keras_igc.IGCConv2D(24, 2)
    with pytest.raises(
        ValueError, match=r"50 input channels.*primary_partitions=24"
    ) as e:
        layer.build((None, 8, 8, 50))
    assert "multiple of 24 (e.g. 72)" in str(e.value)
    assert "[1, 2, 5, 10, 25, 50]" in str(e.value)


@pytest.mark.parametrize("shape", [(8, 8, 4), (1, 2, 8, 8, 4)])
def test_input_rank_must_be_four(shape):
    with pytest.raises(ValueError, match="4D input"):
        keras_igc.IGCConv2D(2, 2)(np.zeros(shape, "float32"))


def test_integer_inputs_are_refused_with_a_fix():
    with pytest.raises(ValueError, match="int32.*Rescaling"):
        keras_igc.IGCConv2D(2, 2)(np.zeros((1, 4, 4, 4), "int32"))


def test_dense_equivalent_kernel_needs_a_built_layer():
    with pytest.raises(ValueError, match="built layer"):
        keras_igc.IGCConv2D(2, 2).dense_equivalent_kernel()


def test_sublayers_are_the_paper_composition():
    layer = make_layer(4, 3, (1, 8, 8, 8), padding="same")
    assert isinstance(layer.primary, keras.layers.Conv2D)
    assert layer.primary.groups == 4 and layer.primary.kernel.shape == (3, 3, 2, 12)
    assert isinstance(layer.secondary, keras.layers.Conv2D)
    assert layer.secondary.groups == 3 and layer.secondary.kernel_size == (1, 1)
    assert layer.permutation.groups == 4 and layer.inverse_permutation.groups == 3
    x = np.arange(12, dtype="float32").reshape(1, 1, 1, 12)
    round_trip = layer.inverse_permutation(layer.permutation(x))
    np.testing.assert_array_equal(to_numpy(round_trip), x)

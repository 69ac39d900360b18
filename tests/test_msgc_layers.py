"""MSGC layers: gate, mask generator, masked grouped convolution, MAC loss."""

import math

import keras
import numpy as np
import pytest
from harness import assert_close, assert_round_trip
from keras import ops

import keras_igc


def numpy(x):
    return ops.convert_to_numpy(x)


def open_masks(layer):
    """Force every gate open: a huge initial logit."""
    layer.mask_generator.expand.bias.assign(
        np.full(layer.heads * layer.input_channels, 100.0, "float32")
    )


def test_gate_is_hard_in_training_with_straight_through_gradients():
    gate = keras_igc.GumbelSigmoidGate(seed=1)
    logits = keras.Variable(np.linspace(-3, 3, 64).reshape(4, 16).astype("float32"))
    out = numpy(gate(logits, training=True))
    assert set(np.unique(out)) <= {0.0, 1.0} and 0 < out.mean() < 1
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            y = ops.sum(gate(logits, training=True) * np.arange(64).reshape(4, 16))
        grad = tape.gradient(y, logits).numpy()
        assert np.all(grad >= 0) and np.count_nonzero(grad) > 32  # sigmoid'


def test_gate_is_deterministic_at_inference():
    gate = keras_igc.GumbelSigmoidGate(threshold=0.5)
    logits = np.array([[-0.1, 0.0, 0.1, 5.0]], "float32")
    first = numpy(gate(logits, training=False))
    assert first.tolist() == [[0.0, 1.0, 1.0, 1.0]]
    np.testing.assert_array_equal(first, numpy(gate(logits, training=False)))


def test_training_gates_threshold_logits_plus_the_sampled_noise(monkeypatch):
    # The release: hard = (sigmoid((logit + noise) / T) >= 0.5), the gradient
    # that of the sigmoid; `sample_noise` is the one place noise comes from.
    gate = keras_igc.GumbelSigmoidGate()
    logits = np.array([[-1.0, -0.1, 0.2, 3.0]], "float32")
    noise = np.array([[1.5, -0.2, 0.1, -3.5]], "float32")
    monkeypatch.setattr(gate, "sample_noise", lambda shape: noise)
    out = numpy(gate(logits, training=True))
    assert out.tolist() == [[1.0, 0.0, 1.0, 0.0]]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(logits)
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(gate(variable, training=True))
        soft = 1 / (1 + np.exp(-(logits + noise) / gate.temperature))
        expected = soft * (1 - soft) / gate.temperature
        np.testing.assert_allclose(tape.gradient(total, variable), expected, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [{"temperature": 0}, {"threshold": 1.0}])
def test_gate_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=list(kwargs)[0]):
        keras_igc.GumbelSigmoidGate(**kwargs)


def test_masks_differ_between_samples():
    layer = keras_igc.MSGCConv2D(8, 3, heads=2, seed=0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6, 6, 8)).astype("float32") + rng.normal(size=(4, 1, 1, 8))
    layer(x)
    generator = layer.mask_generator
    generator.reduce.kernel.assign(rng.normal(size=(8, 2)).astype("float32"))
    generator.expand.kernel.assign(rng.normal(size=(2, 16)).astype("float32"))
    generator.expand.bias.assign(np.zeros(16, "float32"))
    masks = numpy(layer.masks(x, training=False))
    assert masks.shape == (4, 2, 8)
    assert any(not np.array_equal(masks[0], masks[i]) for i in range(1, 4))


@pytest.mark.parametrize("heads, strides", [(1, 1), (4, 1), (2, 2)])
def test_open_masks_equal_the_dense_convolution(heads, strides):
    x = np.random.default_rng(1).normal(size=(2, 7, 7, 12)).astype("float32")
    layer = keras_igc.MSGCConv2D(8, 3, heads=heads, strides=strides, use_bias=True)
    layer(x)
    open_masks(layer)
    layer.conv.bias.assign(np.arange(8, dtype="float32"))
    dense = keras.layers.Conv2D(8, 3, strides=strides, padding="same")
    dense.build(x.shape)
    dense.set_weights([numpy(layer.kernel), numpy(layer.conv.bias)])
    for training in (False, True):
        outputs, gates = layer(x, training=training)
        assert_close(numpy(outputs), numpy(dense(x)), rel=1e-5)
        np.testing.assert_array_equal(numpy(gates), np.ones((2, heads, 12)))
    assert layer.dense_macs == 3 * 3 * 12 * 8 * math.prod(layer.output_size)


def test_closed_channels_are_not_read_by_their_head():
    layer = keras_igc.MSGCConv2D(4, 1, heads=2)
    x = np.random.default_rng(3).normal(size=(1, 3, 3, 2)).astype("float32")
    layer(x)
    # Head 0 reads channel 0 only, head 1 channel 1 only.
    layer.mask_generator.expand.kernel.assign(np.zeros((1, 4), "float32"))
    layer.mask_generator.expand.bias.assign(np.array([9, -9, -9, 9], "float32"))
    outputs, gates = layer(x)
    assert numpy(gates)[0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    kernel = numpy(layer.kernel)[0, 0]  # (C_in, filters)
    expected = np.concatenate(
        [x[..., :1] @ kernel[:1, :2], x[..., 1:] @ kernel[1:, 2:]], axis=-1
    )
    assert_close(numpy(outputs), expected, rel=1e-5)


def test_mac_regularizer_counts_as_the_release():
    # Two masked convolutions: a producer with 2 heads writing 4 channels, a
    # reader with 1 head on those 4 channels, and a static credit.
    regularizer = keras_igc.MACRegularizer(
        dense_macs=10000.0, static_macs=100.0,
        convolutions=[{"macs": 2000.0, "heads": 2}, {"macs": 800.0, "heads": 1}],
        bonuses=[{"reader": 1, "producer": 0}, {"reader": 1, "upstream_macs": 40.0}],
    )  # fmt: skip
    producer = np.array(
        [[[1, 1, 0], [0, 0, 0]], [[1, 1, 1], [1, 0, 1]]], "float32"
    )  # (batch 2, heads 2, C_in 3)
    reader = np.array([[[1, 0, 1, 1]], [[0, 0, 1, 1]]], "float32")
    per_sample, batch = [], 0.0
    for p, r in zip(producer, reader, strict=True):
        unread = 1 - r[0]  # channels 0..3; producer head h owns channels 2h, 2h+1
        bonus = sum(p[h].mean() * 2000 / 2 * unread[2 * h : 2 * h + 2].mean()
                    for h in range(2)) + 40 * unread.mean()  # fmt: skip
        per_sample.append(100 + p.mean() * 2000 + r.mean() * 800 - bonus)
    unread = 1 - reader[:, 0]
    bonus = sum(producer[:, h].mean() * 1000 * unread[:, 2 * h : 2 * h + 2].mean()
                for h in range(2)) + 40 * unread.mean()  # fmt: skip
    batch = 100 + producer.mean() * 2000 + reader.mean() * 800 - bonus
    np.testing.assert_allclose(
        numpy(regularizer.count_macs([producer, reader], per_sample=True)),
        per_sample, rtol=1e-6,
    )  # fmt: skip
    # The release takes each mean over the batch before multiplying.
    assert float(numpy(regularizer.count_macs([producer, reader]))) == (
        pytest.approx(batch, rel=1e-6)
    )
    assert batch != pytest.approx(np.mean(per_sample), rel=1e-4)


def test_msgc_layers_round_trip_through_config_and_saving(tmp_path):
    inputs = keras.Input((8, 8, 8))
    y, gates1 = keras_igc.MSGCConv2D(8, 3, heads=2, attention=True, name="a")(inputs)
    hidden = keras.layers.ReLU()(y)
    y, gates2 = keras_igc.MSGCConv2D(8, 1, heads=1, name="b")([hidden, inputs])
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras_igc.MACRegularizer(
        dense_macs=10**6, static_macs=5,
        convolutions=[{"macs": 9216, "heads": 2}, {"macs": 4096, "heads": 1}],
        bonuses=[{"reader": 1, "producer": 0}],
    )([y, gates1, gates2])  # fmt: skip
    model = keras.Model(inputs, y)
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 8)).astype("float32")
    assert_round_trip(model, x, tmp_path, rel=1e-6)
    for layer in model.layers:
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config


def test_mac_regularizer_adds_the_hinge_and_reports_macs():
    regularizer = keras_igc.MACRegularizer(
        dense_macs=1000.0, static_macs=100.0,
        convolutions=[{"macs": 1200.0, "heads": 2}],
    )  # fmt: skip
    outputs = np.ones((2, 3), "float32")
    gates = np.array([[[1, 0], [1, 1]], [[0, 0], [1, 0]]], "float32")  # mean 0.5
    np.testing.assert_array_equal(numpy(regularizer([outputs, gates])), outputs)
    # total = 100 + 0.5 * 1200 = 700 -> ratio 0.7; tau 1 -> no loss
    assert float(numpy(ops.sum(regularizer.losses))) == 0.0
    regularizer.tau.assign(0.5)
    regularizer([outputs, gates])
    assert float(numpy(regularizer.losses[0])) == pytest.approx(30 * 0.2)
    assert float(numpy(regularizer.last_ratio)) == pytest.approx(0.7)
    assert float(numpy(regularizer.last_macs)) == pytest.approx(700e-6)


def test_heads_must_divide_the_filters():
    with pytest.raises(ValueError, match="filters=10, heads=4.*divisors of 10"):
        keras_igc.MSGCConv2D(10, 3, heads=4)


def test_regularizer_rejects_bad_counts_and_gates():
    one = [{"macs": 10.0, "heads": 2}]
    with pytest.raises(ValueError, match="dense_macs"):
        keras_igc.MACRegularizer(dense_macs=0, convolutions=one)
    with pytest.raises(ValueError, match="needs `convolutions`"):
        keras_igc.MACRegularizer(dense_macs=1)
    with pytest.raises(ValueError, match="'reader': j"):
        keras_igc.MACRegularizer(1, convolutions=one, bonuses=[{"reader": 0}])
    with pytest.raises(ValueError, match="indexes the 1 convolutions"):
        keras_igc.MACRegularizer(
            1, convolutions=one, bonuses=[{"reader": 0, "producer": 3}]
        )
    regularizer = keras_igc.MACRegularizer(dense_macs=1, convolutions=one)
    with pytest.raises(ValueError, match="counts 1 masked convolutions.*0 gate"):
        regularizer([np.ones((1, 2), "float32")])
    with pytest.raises(ValueError, match="heads=2"):
        regularizer([np.ones((1, 2), "float32"), np.ones((1, 3, 4), "float32")])


def test_a_per_layer_dtype_reaches_every_sublayer():
    layer = keras_igc.MSGCConv2D(8, 3, heads=4, attention=True, dtype="float64")
    layer(np.ones((2, 6, 6, 4)))
    assert {w.dtype for w in layer.weights} == {"float64"}
    generator = keras_igc.MaskGenerator(4, 4, dtype="float64")
    generator(np.ones((2, 6, 6, 4)))
    assert {w.dtype for w in generator.weights} == {"float64"}


def test_under_mixed_precision_the_macs_are_declared_and_returned_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = keras_igc.MSGCConv2D(8, 3, heads=4)
        symbolic = layer(keras.Input((6, 6, 4)))
        eager = layer(np.ones((2, 6, 6, 4), "float32"))
    finally:
        keras.config.set_dtype_policy(previous)
    declared = [keras.backend.standardize_dtype(t.dtype) for t in symbolic]
    returned = [keras.backend.standardize_dtype(t.dtype) for t in eager]
    assert declared == returned == ["float16", "float32"]


@pytest.mark.parametrize(
    "layer",
    [keras_igc.ChannelShuffle(2), keras_igc.GumbelSigmoidGate()],
    ids=["ChannelShuffle", "GumbelSigmoidGate"],
)
def test_masks_pass_through_like_permute_and_activation(layer):
    mask = np.array([[True, False, True]])
    assert layer.supports_masking
    assert numpy(layer.compute_mask(np.ones((1, 3, 4)), mask)).tolist() == [
        [True, False, True]
    ]


def _small_msgc_cnn():
    from keras_igc import msgc

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="body")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    dense = keras.Model(inputs, outputs)
    rules = lambda layer: {"heads": 4} if layer.name == "body" else None  # noqa: E731
    return msgc.convert(dense, rules)


def test_a_converted_cnn_fits_evaluates_and_round_trips_on_every_backend(tmp_path):
    model = _small_msgc_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.random.RandomState(0).rand(8, 8, 8, 3).astype("float32")
    y = np.arange(8) % 3
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(x, y))
    assert {"macs", "mac_ratio", "val_macs", "val_mac_ratio"} <= set(history.history)
    assert 0 < history.history["mac_ratio"][0] < 2
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    assert result["macs"] > 0
    loaded = assert_round_trip(model, x, tmp_path, rel=1e-6, predict=True)
    assert type(loaded).__name__ == "MSGCModel"
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0)


@pytest.mark.not_on_jax  # a whole host: the converted CNN above fits on JAX
def test_msgc_resnet18_fits_and_round_trips(tmp_path):
    from keras_igc import applications, msgc

    model = applications.MSGCResNet18(input_shape=(32, 32, 3), classes=4)
    msgc.compile_for_msgc(model, steps_per_epoch=2, epochs=1)
    x = np.random.RandomState(0).rand(8, 32, 32, 3).astype("float32")
    y = np.arange(8) % 4
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert {"loss", "accuracy", "macs", "mac_ratio"} <= set(history.history)
    assert np.isfinite(history.history["loss"][0]) and history.history["macs"][0] > 0
    # Called, not `predict`: evaluate and predict are covered on the small
    # network above.
    assert_round_trip(model, x, tmp_path, rel=1e-5)

"""Quantization-aware training on every backend: the rounding the int8 files
apply (kernels per output channel, activations per tensor), BatchNorm folded
as the export folds it, the freeze, the rebuilt networks, saving and the
errors. The int8 files of a QAT model: tests/test_quantization_export.py."""

import keras
import numpy as np
import pytest

import keras_igc
from keras_igc.applications import registry
from keras_igc.export import prepare
from keras_igc.quantization import (
    ActivationQuantizer,
    FreezeBatchNorm,
    QuantizeAwareConvolution,
    QuantizeAwareMSGCConv2D,
    freeze_batch_norm_statistics,
    inference_model,
    quantize_aware,
)


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def rng_images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def rounded_per_channel(kernel, axes=(-1,)):
    """int8 rounding with one symmetric scale per index of `axes`, in NumPy
    (independent of the layers' own code)."""
    kernel = np.asarray(keras.ops.convert_to_numpy(kernel), "float64")
    keep = {a % kernel.ndim for a in axes}
    others = tuple(i for i in range(kernel.ndim) if i not in keep)
    scale = np.abs(kernel).max(axis=others, keepdims=True) / 127
    return np.clip(np.round(kernel / scale), -127, 127) * scale


def with_statistics(model, seed=1):
    """Give every BatchNorm moving statistics and an affine part far from
    the defaults, so that folding them is checked."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(size=c).astype("float32") * 0.3)
            layer.moving_variance.assign(rng.uniform(0.3, 3, c).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 2, c).astype("float32"))
            layer.beta.assign(rng.normal(size=c).astype("float32") * 0.2)
    return model


def test_activation_quantizer_learns_its_range_and_rounds_to_256_levels():
    layer = ActivationQuantizer(momentum=0.5)
    x = rng_images((4, 6, 6, 3))
    # Before a training batch it passes its input through.
    np.testing.assert_array_equal(numpy(layer(x)), x)
    assert layer.range is None
    y = numpy(layer(x, training=True))  # the first batch sets the range
    low, high = layer.range
    assert low == pytest.approx(x.min()) and high == pytest.approx(x.max())
    step = (high - low) / 255
    levels = (y - y.min()) / step
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    assert len(np.unique(np.round(levels))) > 100
    layer(2 * x, training=True)  # later batches move it by the momentum
    assert layer.range[1] == pytest.approx(0.5 * high + 0.5 * 2 * x.max())
    frozen = ActivationQuantizer(fixed_range=(-1.0, 3.0))
    assert not frozen.weights
    assert frozen.get_config()["fixed_range"] == [-1.0, 3.0]
    clipped = numpy(frozen(np.array([[-5.0, 0.0, 10.0]], "float32")))
    np.testing.assert_allclose(clipped, [[-1.0, 0.0, 3.0]], atol=0.02)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"momentum": 1.0}, "momentum=1.0"),
        ({"momentum": True}, "momentum=True"),
        ({"fixed_range": (2.0, 1.0)}, "fixed_range=(2.0, 1.0)"),
        ({"fixed_range": "wide"}, "fixed_range='wide'"),
    ],
)
def test_bad_quantizer_arguments_are_named(kwargs, message):
    with pytest.raises(
        ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        ActivationQuantizer(**kwargs)


def linear_layers():
    """One of each layer QAT rounds, on an 8-channel input."""
    return {
        "conv": keras.layers.Conv2D(6, 3, padding="same", use_bias=True),
        "depthwise": keras.layers.DepthwiseConv2D(
            3, depth_multiplier=2, padding="same"
        ),
        "grouped": keras_igc.GroupConv2D(8, 1, groups=4, use_bias=False),
        "igc": keras_igc.IGCConv2D(4, 2, padding="same", use_bias=False),
        "igc_strided": keras_igc.IGCConv2D(2, 4, strides=2, padding="same"),
    }


def test_the_folded_rounded_layers_are_what_the_export_folds_then_rounds():
    """Inference of a fresh QAT model (its quantizers have no range yet) is
    the export's folded clone with each kernel rounded per output channel:
    the same BatchNorm fold, the same weights, for each layer QAT rounds (one
    branch each, concatenated)."""
    inputs = keras.Input((6, 6, 8))
    branches = []
    for layer in linear_layers().values():
        x = keras.layers.BatchNormalization()(layer(inputs))
        x = keras.layers.ReLU()(x)
        branches.append(keras.layers.Flatten()(x))
    model = with_statistics(keras.Model(inputs, keras.layers.Concatenate()(branches)))
    folded, _ = prepare(model, block_form="auto_sparse")
    for layer in folded.layers:
        if isinstance(layer, keras_igc.IGCConv2D):
            layer.primary.kernel.assign(rounded_per_channel(layer.primary.kernel))
            layer.secondary.kernel.assign(rounded_per_channel(layer.secondary.kernel))
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            layer.kernel.assign(rounded_per_channel(layer.kernel, axes=(2, 3)))
        elif hasattr(layer, "kernel"):
            layer.kernel.assign(rounded_per_channel(layer.kernel))
        if hasattr(layer, "set_execution_form"):  # a merged kernel is a snapshot
            layer.set_execution_form(layer.execution_form)
    qat = quantize_aware(model)
    kinds = [type(layer).__name__ for layer in qat.layers[1:]]
    assert kinds.count("QuantizeAwareConvolution") == len(linear_layers())
    assert "BatchNormalization" not in kinds and "ReLU" not in kinds
    x = rng_images((2, 6, 6, 8))
    np.testing.assert_allclose(numpy(qat(x)), numpy(folded(x)), atol=2e-5, rtol=1e-5)


def test_batch_norm_trains_on_batch_statistics_until_frozen():
    inputs = keras.Input((6, 6, 8))
    x = keras_igc.IGCConv2D(4, 2, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.5)(x)
    model = with_statistics(keras.Model(inputs, x))
    qat = quantize_aware(model)
    layer = qat.get_layer(model.layers[1].name)
    x = rng_images((4, 6, 6, 8)) * 3 + 1
    before = numpy(layer.batch_norm.moving_mean)
    trained = numpy(qat(x, training=True))
    # Normalised with the batch's statistics (then rounded): per channel,
    # mean beta and standard deviation gamma.
    beta, gamma = numpy(layer.batch_norm.beta), numpy(layer.batch_norm.gamma)
    np.testing.assert_allclose(trained.mean(axis=(0, 1, 2)), beta, atol=0.05)
    np.testing.assert_allclose(trained.std(axis=(0, 1, 2)), np.abs(gamma), rtol=0.05)
    moved = numpy(layer.batch_norm.moving_mean)
    assert not np.allclose(moved, before)
    assert freeze_batch_norm_statistics(qat) == 1
    frozen = numpy(qat(x, training=True))
    np.testing.assert_allclose(numpy(layer.batch_norm.moving_mean), moved)
    # Frozen, training computes exactly the folded layer of inference.
    np.testing.assert_allclose(frozen, numpy(qat(x)), atol=1e-5)


def test_gradients_pass_straight_through_the_rounding():
    inputs = keras.Input((6, 6, 8))
    x = keras_igc.IGCConv2D(4, 2, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    qat = quantize_aware(keras.Model(inputs, outputs))
    qat.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    x, y = rng_images((8, 6, 6, 8)), np.arange(8) % 3
    weights = [numpy(w) for w in qat.trainable_weights]
    qat.fit(x, y, batch_size=4, epochs=1, verbose=0)
    changed = [
        not np.allclose(numpy(w), before)
        for w, before in zip(qat.trainable_weights, weights, strict=True)
    ]
    assert all(changed), list(zip(qat.trainable_weights, changed, strict=True))
    ranges = [
        layer.range
        for layer in keras_igc.keras_internals.all_layers(qat)
        if isinstance(layer, ActivationQuantizer)
    ]
    # The input, the block's primary output and output, the mean, the logits.
    assert len(ranges) == 5 and None not in ranges


def small_mobile_network():
    """IGCV3's pieces: a grouped 1x1, a shuffle, a depthwise with ReLU6, a
    residual addition, a ReLU after an addition, and a pooled classifier."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 8))
    x = keras_igc.GroupConv2D(16, 1, groups=2, use_bias=False, name="expand")(inputs)
    x = layers.BatchNormalization(name="expand_bn")(x)
    x = keras_igc.ChannelShuffle(2, name="shuffle")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(x)
    x = layers.BatchNormalization(name="depthwise_bn")(x)
    x = layers.ReLU(6.0, name="depthwise_relu")(x)
    # Keras' own grouped convolution
    x = layers.Conv2D(8, 1, groups=2, use_bias=False, name="project")(x)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.Add(name="add")([x, inputs])
    x = layers.ReLU(name="add_relu")(x)
    x = layers.MaxPooling2D(name="max_pool")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(4, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def test_quantize_aware_rounds_where_the_runtimes_do(tmp_path):
    model = small_mobile_network()
    qat = quantize_aware(model)
    kinds = {layer.name: type(layer).__name__ for layer in qat.layers}
    # Convolutions take their BatchNorm and activation; an addition takes the
    # ReLU after it; moving layers (shuffle, max pooling) round nothing.
    assert list(kinds.values()).count("QuantizeAwareConvolution") == 4
    assert not {"expand_bn", "depthwise_bn", "depthwise_relu"} & set(kinds)
    assert (
        kinds["add"] == "Add" and kinds["add_relu_quantizer"] == "ActivationQuantizer"
    )
    assert "add_quantizer" not in kinds and "max_pool_quantizer" not in kinds
    assert kinds["shuffle"] == "ChannelShuffle" and "avg_pool_quantizer" in kinds
    activations = {
        layer.name: layer.activation
        for layer in qat.layers
        if isinstance(layer, QuantizeAwareConvolution)
    }
    assert sorted(activations.values()) == ["linear", "linear", "relu6", "softmax"]
    grouped = qat.get_layer("project").layer
    assert type(grouped).__name__ == "GroupConv2D"  # not Keras' XLA path
    assert keras_igc.complexity.model_complexity(qat) == (
        keras_igc.complexity.model_complexity(model)
    )
    # Trains, saves with its compile state and loads safely, the same model.
    qat.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    x, y = rng_images((8, 8, 8, 8)), np.arange(8) % 4
    qat.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / "qat.keras")
    qat.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(qat(x)))
    # (A QAT run resumes exactly: tests/test_quantization_export.py.)


def test_the_inference_model_is_the_trained_model_as_plain_layers():
    """What the exporters convert: the rounded model computes what the QAT
    model computes at inference, the float one the same without rounding
    activations (its rounded kernels kept)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 8)),
            keras_igc.IGCConv2D(4, 2, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    qat = quantize_aware(with_statistics(model))
    x = rng_images((16, 6, 6, 8))
    qat(x, training=True)  # sets every range
    rounded, plain = inference_model(qat), inference_model(qat, round_activations=False)
    kinds = [type(layer).__name__ for layer in rounded.layers[1:]]
    assert kinds == [
        "ActivationQuantizer", "GroupConv2D", "ActivationQuantizer", "Conv2D", "ReLU",
        "ActivationQuantizer", "GlobalAveragePooling2D", "ActivationQuantizer",
        "Dense", "ActivationQuantizer",
    ]  # fmt: skip
    assert not any(isinstance(layer, ActivationQuantizer) for layer in plain.layers)
    logits = numpy(qat(x))
    step = np.ptp(logits) / 255
    assert np.abs(numpy(rounded(x)) - logits).max() <= step
    assert np.abs(numpy(plain(x)) - logits).max() > step  # rounding matters
    for layer in keras_igc.keras_internals.all_layers(qat):
        if isinstance(layer, ActivationQuantizer):
            layer.initialized.assign(0.0)  # now passes activations through
    # (The float model's bias keeps the int8 files' grid, the QAT model's
    # bias without ranges does not: a small fraction of a step apart.)
    np.testing.assert_allclose(numpy(plain(x)), numpy(qat(x)), atol=1e-4)


def test_freeze_batch_norm_callback_freezes_from_its_epoch():
    inputs = keras.Input((6, 6, 8))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    qat = quantize_aware(keras.Model(inputs, keras.layers.Dense(2)(x)))
    qat.compile(keras.optimizers.SGD(0.01), "mse")
    x, y = rng_images((4, 6, 6, 8)), np.zeros((4, 2), "float32")
    layer = qat.layers[2]
    seen = []
    watch = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(float(layer.batch_norm_frozen))
    )
    qat.fit(x, y, epochs=3, verbose=0, callbacks=[FreezeBatchNorm(2), watch])
    assert seen == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="epoch=-1"):
        FreezeBatchNorm(-1)


@pytest.mark.tensorflow_only  # a whole network: its layers run on every backend above
def test_a_registry_network_becomes_quantization_aware():
    model = registry.get_model(
        "IGC-L24M2", depth=8, weights=None, input_shape=(16, 16, 1), classes=10
    )
    qat = quantize_aware(model)
    wrapped = [l for l in qat.layers if isinstance(l, QuantizeAwareConvolution)]
    convolutions = [
        l
        for l in model.layers
        if isinstance(l, keras.layers.Conv2D | keras_igc.IGCConv2D)
    ]
    assert {l.name for l in wrapped} == {l.name for l in convolutions} | {"predictions"}
    assert all(l.batch_norm is not None for l in wrapped if l.name != "predictions")
    assert qat.get_layer("predictions").activation == "softmax"
    assert np.allclose(numpy(qat(rng_images((2, 16, 16, 1)))).sum(-1), 1, atol=1e-5)


class Doubling(keras.layers.Layer):
    def call(self, x):
        return 2 * x


class Subclassed(keras.Model):
    def call(self, x):
        return x


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: keras.Sequential([keras.Input((4, 4, 2)), Doubling(name="twice")]),
            ValueError,
            r"does not cover layer 'twice' \(Doubling\).*post-training int8",
        ),
        (
            lambda: keras.Sequential(
                [keras.Input((4, 4, 2)), keras.layers.Conv2D(2, 1, activation="tanh")]
            ),
            ValueError,
            "activation='tanh'",
        ),
        (lambda: Subclassed(), ValueError, "subclassed Subclassed"),
        (lambda: "model.keras", TypeError, "expects a keras.Model"),
        (
            lambda: quantize_aware(
                keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(2, 1)])
            ),
            ValueError,
            "already quantization-aware",
        ),
        (
            lambda: keras.Sequential(
                [
                    keras.Input((4, 4, 2)),
                    keras.Sequential(
                        [keras.Input((4, 4, 2)), keras.layers.Conv2D(2, 1)]
                    ),
                ]
            ),
            ValueError,
            "one flat graph",
        ),
    ],
    ids=["layer", "activation", "subclassed", "not-a-model", "twice", "nested"],
)
def test_what_qat_cannot_take_is_named_with_the_fix(make, error, message):
    with pytest.raises(error, match=message):
        quantize_aware(make())


def test_the_qat_layers_pass_keras_run_layer_test():
    """Keras' own layer test harness (config round trip, symbolic and eager
    calls, saving, a training step, mixed precision), as every public layer
    of keras_igc.layers takes it (test_layer_harness.py)."""
    from keras.src.testing import TestCase

    class Harness(TestCase):
        def runTest(self):
            pass

    harness = Harness()
    harness.setUp()
    serialize = keras.saving.serialize_keras_object
    try:
        harness.run_layer_test(
            ActivationQuantizer, init_kwargs=dict(momentum=0.9),
            input_shape=(2, 4, 4, 3), expected_output_shape=(2, 4, 4, 3),
            expected_num_trainable_weights=0, expected_num_non_trainable_weights=3,
            run_training_check=False,  # nothing to train
        )  # fmt: skip
        harness.run_layer_test(
            QuantizeAwareConvolution,
            init_kwargs=dict(
                layer=serialize(keras_igc.IGCConv2D(4, 2, padding="same")),
                batch_norm=serialize(keras.layers.BatchNormalization()),
                activation="relu6",
            ),
            input_shape=(2, 6, 6, 8), expected_output_shape=(2, 6, 6, 8),
            # primary, secondary, bias, gamma, beta; the moving statistics,
            # the freeze and two ranges of three variables
            expected_num_trainable_weights=5, expected_num_non_trainable_weights=9,
        )  # fmt: skip
    finally:
        keras.config.set_dtype_policy("float32")


def test_qat_computes_in_float32_under_a_mixed_precision_policy():
    """The rounding of the int8 files, not float16's: the copy is float32
    whatever the global policy (docs/quantization.md)."""
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = small_mobile_network()
        qat = quantize_aware(model)
    finally:
        keras.config.set_dtype_policy("float32")
    assert {layer.compute_dtype for layer in qat.layers[1:]} == {"float32"}
    assert keras.backend.standardize_dtype(qat(rng_images((1, 8, 8, 8))).dtype) == (
        "float32"
    )


def small_msgc_network():
    """Two MSGC convolutions (one with attention) of a residual block,
    masked from the block's input, each followed by BatchNorm (and ReLU),
    the way the MSGC hosts are built (`msgc.convert`)."""
    layers = keras.layers
    inputs = keras.Input((6, 6, 4), name="image")
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(name="stem_bn")(x))
    y = layers.Conv2D(8, 3, padding="same", use_bias=False, name="first")(x)
    y = layers.ReLU(name="first_relu")(layers.BatchNormalization(name="first_bn")(y))
    y = layers.Conv2D(8, 1, use_bias=False, name="second")(y)
    y = layers.BatchNormalization(name="second_bn")(y)
    y = layers.ReLU(name="out")(layers.Add(name="add")([x, y]))
    y = layers.GlobalAveragePooling2D(name="pool")(y)
    outputs = layers.Dense(3, activation="softmax", name="predictions")(y)
    dense = with_statistics(keras.Model(inputs, outputs, name="block"))
    rules = {"first": {"heads": 2, "source": "first"},
             "second": {"heads": 2, "attention": True, "source": "first"}}  # fmt: skip
    return keras_igc.msgc.convert(dense, lambda layer: rules.get(layer.name))


def test_an_msgc_network_trains_quantization_aware_gates_included(tmp_path):
    from keras_igc import msgc

    model = small_msgc_network()
    qat = quantize_aware(model)
    assert isinstance(qat, msgc.MSGCModel)  # fit reports its MACs
    gated = {l.name: l for l in qat.layers if isinstance(l, QuantizeAwareMSGCConv2D)}
    assert set(gated) == {"first", "second"}
    assert gated["first"].activation == "relu" and gated["second"].activation == (
        "linear"
    )
    assert gated["second"].batch_norm is not None
    assert not {"first_bn", "first_relu", "second_bn"} & {l.name for l in qat.layers}
    assert "attention_quantizer" in {
        q.name for q in gated["second"].quantizers.values()
    }
    x, y = rng_images((8, 6, 6, 4)), np.arange(8) % 3
    qat.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    history = qat.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert {"macs", "mac_ratio"} <= set(history.history)
    assert all(None not in layer.ranges().values() for layer in gated.values())
    assert freeze_batch_norm_statistics(qat) == 2 + 1  # the stem's and the two
    # The int8 files' graph computes what the QAT model computes; its gates
    # are the float tools' gates (msgc.inference_gates reads the QAT layers).
    rounded = inference_model(qat)
    assert not any(isinstance(l, keras_igc.MACRegularizer) for l in rounded.layers)
    logits = numpy(qat(x))
    assert np.abs(numpy(rounded(x)) - logits).max() <= np.ptp(logits) / 255
    gates = msgc.inference_gates(qat, x)
    probe = keras.Model(rounded.input, rounded.get_layer("first").output[1])
    np.testing.assert_array_equal(numpy(probe(x)), gates["first"])
    path = str(tmp_path / "msgc-qat.keras")
    qat.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(numpy(loaded(x)), logits)


def test_msgc_gates_are_decided_on_the_rounded_logits():
    """A mask logit just below the gate's cut (0) rounds to 0 on the logits'
    int8 levels: the int8 file opens the gate that float closes, and so
    does the quantization-aware layer."""
    layer = QuantizeAwareMSGCConv2D(
        4, 1, heads=2,
        fixed_ranges={"pool": [-4, 4], "hidden": [0, 4], "logits": [-1, 1],
                      "masks": [0, 1], "copies": [-4, 4], "output": [-8, 8]},
    )  # fmt: skip
    float_layer = keras_igc.MSGCConv2D(4, 1, heads=2)
    x = rng_images((2, 4, 4, 4))
    layer(x), float_layer(x)
    for generator in (layer.mask_generator, float_layer.mask_generator):
        generator.expand.kernel.assign(np.zeros(generator.expand.kernel.shape))
        generator.expand.bias.assign(np.full(generator.expand.units, -0.003))
    np.testing.assert_array_equal(numpy(float_layer(x)[1]), 0.0)
    np.testing.assert_array_equal(numpy(layer(x)[1]), 1.0)


def test_an_igcv2_block_becomes_its_rounded_chain():
    """Each convolution of the chain is rounded; the BatchNorm after the
    block moves before its last shuffle, its channels permuted to match."""
    inputs = keras.Input((6, 6, 8))
    x = keras_igc.IGCV2Conv2D((2, 4), 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = with_statistics(keras.Model(inputs, keras.layers.Dense(3)(x)))
    qat = quantize_aware(model)
    kinds = [type(layer).__name__ for layer in qat.layers[1:]]
    assert kinds[:6] == [
        "ActivationQuantizer", "QuantizeAwareConvolution", "QuantizeAwareConvolution",
        "ChannelShuffle", "QuantizeAwareConvolution", "ChannelShuffle",
    ]  # fmt: skip
    last = qat.layers[5]
    assert last.batch_norm is not None and last.activation == "relu"
    # Before training, activations pass through: only the kernels' rounding
    # separates it from the float model (a misplaced BatchNorm channel would
    # not be this close).
    x = rng_images((4, 6, 6, 8))
    expected = numpy(model(x))
    assert np.abs(numpy(qat(x)) - expected).max() < 0.02 * np.abs(expected).max()
    qat(x, training=True)
    np.testing.assert_allclose(
        numpy(inference_model(qat)(x)), numpy(qat(x)), atol=np.ptp(numpy(qat(x))) / 255
    )


def test_biases_lie_on_the_int32_grid_of_the_int8_files():
    """At inference a bias is what the int8 files store: an integer number
    of steps of the input's scale times its channel's kernel scale (off that
    grid, outputs near a step's edge round to the other step)."""
    inputs = keras.Input((6, 6, 3), name="image")
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = with_statistics(keras.Model(inputs, keras.layers.Dense(4, name="dense")(x)))
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng_images(layer.bias.shape, seed=2))
    qat = quantize_aware(model)
    qat(rng_images((8, 6, 6, 3)), training=True)  # sets every range
    rounded = inference_model(qat)
    # Whose rounding each layer reads.
    readers = {"conv": "image_quantizer", "depthwise": "conv",
               "dense": "pool_quantizer"}  # fmt: skip

    def input_step(name):
        layer = qat.get_layer(name)
        low, high = getattr(layer, "output_quantizer", layer).range
        return (max(high, 0) - min(low, 0)) / 255

    for name, reader in readers.items():
        kernel, bias = (numpy(w) for w in rounded.get_layer(name).weights)
        axes = (0, 1) if name == "depthwise" else tuple(range(kernel.ndim - 1))
        kernel_step = np.abs(kernel).max(axis=axes).reshape(-1) / 127
        steps = bias / (input_step(reader) * kernel_step)
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-3, err_msg=name)
        assert np.abs(steps).max() > 10  # not all zero

"""MSGCConv2D's inference forms: the gathered form skips the channels the
gates close and gives the masked form's outputs, layer and whole hosts."""

import keras
import numpy as np
import pytest
from harness import scramble_generators
from keras import ops

from keras_igc import applications, forms, keras_internals, msgc
from keras_igc.layers import MSGCConv2D

GATHERS = keras.backend.backend() != "jax"
FORMS = ("masked", "gather", "auto") if GATHERS else ("masked", "auto")


def numpy(x):
    return ops.convert_to_numpy(x)


def calibrate_batch_norm(model, x):
    """Moving statistics of `x`: untrained ones let activations overflow."""
    norms = [
        l for l in keras_internals.all_layers(model)
        if isinstance(l, keras.layers.BatchNormalization)
    ]  # fmt: skip
    for layer in norms:
        layer.momentum = 0.0
    model(x, training=True)


def relative_difference(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize(
    "kernel, heads, attention, use_bias, strides, size, granularity",
    [
        (3, 4, False, False, 1, 9, 1),
        (3, 4, True, True, 2, 9, 1),
        (3, 1, False, True, 1, 9, 1),
        (3, 2, True, False, 1, 9, 1),
        (1, 4, True, True, 1, 9, 1),  # "auto": the per-sample scaled kernel
        (1, 1, False, False, 2, 9, 1),
        # From 28x28 the channels are picked by a GEMM, not gathered.
        (3, 4, True, False, 1, 28, 1),
        (3, 1, False, True, 2, 28, 1),
        # Gates on blocks of channels: whole blocks gathered, on either map size.
        (3, 4, True, True, 1, 9, 2),
        (3, 1, False, False, 2, 28, 2),
        (1, 2, False, True, 1, 9, 4),
    ],
)
@pytest.mark.parametrize("batch", [1, 5])
def test_every_form_gives_the_masked_outputs(
    kernel, heads, attention, use_bias, strides, size, granularity, batch
):
    x = np.random.default_rng(batch).normal(size=(batch, size, size, 16))
    x = x.astype("float32")
    outputs = {}
    for form in FORMS:
        keras.utils.set_random_seed(1)
        layer = MSGCConv2D(
            32, kernel, heads=heads, attention=attention, use_bias=use_bias,
            strides=strides, granularity=granularity, implementation=form,
        )  # fmt: skip
        layer(x)
        scramble_generators(layer)
        if use_bias:
            layer.conv.bias.assign(np.linspace(-1, 1, 32).astype("float32"))
        outputs[form], gates = layer(x, training=False)
        kept = numpy(gates).any(axis=0).sum(-1).max()
        assert 0 < kept < 16  # the gathered form has channels to skip
    for form in FORMS:
        assert (
            relative_difference(numpy(outputs[form]), numpy(outputs["masked"])) < 1e-5
        )


@pytest.mark.skipif(not GATHERS, reason="JAX refuses the gathered form")
def test_the_gathered_form_convolves_only_the_kept_channels(monkeypatch):
    from keras_igc.layers import msgc_conv2d

    widths = []
    gather = msgc_conv2d._gather_kernel_rows

    def spy(kernel, order, heads):
        picked = gather(kernel, order, heads)
        widths.append(int(picked.shape[2]))
        return picked

    x = np.random.default_rng(0).normal(size=(3, 6, 6, 16)).astype("float32")
    layer = MSGCConv2D(8, 3, heads=4, implementation="gather")
    layer(x)
    scramble_generators(layer)
    kept = numpy(layer.masks(x)).astype(bool).any(axis=0).sum(-1).max()
    monkeypatch.setattr(msgc_conv2d, "_gather_kernel_rows", spy)
    layer(x, training=False)
    assert widths == [kept] and kept < 16


def test_granularity_gates_whole_blocks_of_channels(monkeypatch):
    from keras_igc.layers import msgc_conv2d

    x = np.random.default_rng(0).normal(size=(3, 6, 6, 16)).astype("float32")
    layer = MSGCConv2D(8, 3, heads=2, granularity=4, implementation=FORMS[1])
    layer(x)
    assert tuple(layer.mask_generator.expand.bias.shape) == (2 * 16 // 4,)
    scramble_generators(layer)
    gates = numpy(layer(x, training=False)[1])
    blocks = gates.reshape(3, 2, 4, 4)
    assert np.all(blocks == blocks[..., :1])  # one value per block
    assert 0 < gates.mean() < 1
    if not GATHERS:
        return
    taken = []
    take = msgc_conv2d.ops.take

    def spy(x, index, axis=None):
        if x.ndim == 5:  # the blocks view of the activations
            taken.append(int(x.shape[-1]))
        return take(x, index, axis=axis)

    monkeypatch.setattr(msgc_conv2d.ops, "take", spy)
    layer(x, training=False)
    assert taken == [4]


def test_granularity_must_divide_the_input_channels():
    layer = MSGCConv2D(8, 3, granularity=3)
    with pytest.raises(ValueError, match="granularity=3.*Received 16 input"):
        layer(np.zeros((1, 4, 4, 16), "float32"))
    with pytest.raises(ValueError, match="granularity"):
        MSGCConv2D(8, 3, granularity=0)


def test_convert_counts_block_gates_in_the_generators():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="a")(inputs)
    dense = keras.Model(inputs, keras.layers.Conv2D(8, 3, padding="same", name="b")(x))
    static = {}
    for granularity in (1, 4):
        plan = {"heads": 2, "attention": True, "granularity": granularity}
        model = msgc.convert(dense, lambda l, p=plan: p if l.name == "b" else None)
        static[granularity] = msgc.mac_regularizer(model).static_macs
    hidden = 16 // 4  # the generators' squeeze
    # Only the mask generator's last layer shrinks, to 2 heads x 16 / 4 gates.
    assert static[1] - static[4] == hidden * 2 * (16 - 16 // 4)


@pytest.mark.skipif(not GATHERS, reason="JAX refuses the gathered form")
def test_a_batch_that_closes_every_channel_gives_the_bias():
    x = np.ones((2, 5, 5, 4), "float32")
    layer = MSGCConv2D(4, 3, heads=2, use_bias=True, implementation="gather")
    layer(x)
    layer.mask_generator.expand.bias.assign(np.full(8, -100.0, "float32"))
    layer.conv.bias.assign(np.arange(4, dtype="float32"))
    outputs, gates = layer(x, training=False)
    assert not numpy(gates).any()
    np.testing.assert_allclose(
        numpy(outputs), np.broadcast_to(np.arange(4.0), (2, 5, 5, 4))
    )


@pytest.mark.not_on_jax
@pytest.mark.parametrize(
    "host, attention, granularity",
    # Attention only scales the masks: the layer test covers both for every
    # form, so the larger hosts run with it only.
    [
        ("MSGCResNet18", False, 1),
        ("MSGCResNet18", True, 1),
        ("MSGCResNet18", False, 8),
        ("MSGCResNet50", True, 1),
        ("MSGCMobileNetV2", True, 1),
    ],
)
def test_every_host_gives_the_masked_logits_in_every_form(host, attention, granularity):
    builder = getattr(applications, host)
    x = np.random.default_rng(0).normal(size=(3, 64, 64, 3)).astype("float32")
    models = {}
    for form in FORMS:
        keras.utils.set_random_seed(0)
        models[form] = builder(
            input_shape=(64, 64, 3), classes=10, attention=attention,
            granularity=granularity, implementation=form,
            classifier_activation=None,
        )  # fmt: skip
    scramble_generators(models["masked"], per_sample=False)
    calibrate_batch_norm(models["masked"], x)
    for form in FORMS[1:]:
        models[form].set_weights(models["masked"].get_weights())
    reference = {b: numpy(models["masked"](x[:b], training=False)) for b in (1, 3)}
    for form in FORMS[1:]:
        for batch in (1, 3):
            logits = numpy(models[form](x[:batch], training=False))
            assert relative_difference(logits, reference[batch]) < 1e-5, (form, batch)
    ratios = msgc.inference_macs(models["masked"], x) / (
        msgc.mac_regularizer(models["masked"]).dense_macs
    )
    assert np.all(ratios < 0.9)  # the gates did close channels


@pytest.mark.not_on_jax  # building a host on JAX takes 8-11 s; see the next test
@pytest.mark.parametrize(
    "host, expected",
    [
        ("MSGCResNet18", {"auto", "scaled_kernel"}),
        ("MSGCResNet50", {"masked", "scaled_kernel"}),
        ("MSGCMobileNetV2", {"scaled_kernel"}),
    ],
)
def test_auto_takes_the_measured_form_of_each_layer(host, expected):
    model = getattr(applications, host)(input_shape=(64, 64, 3), classes=10)
    layers = [l for l in model.layers if isinstance(l, MSGCConv2D)]
    for layer in layers:
        choice = forms.choose(layer, "keras")
        assert (layer.active_implementation, layer.gather_limit) == (
            choice.form, choice.gather_limit,
        )  # fmt: skip
    assert {l.active_implementation for l in layers} == expected


@pytest.mark.parametrize(
    "heads, kernel, expected",
    [
        (1, 3, "auto" if GATHERS else "masked"),
        (4, 3, "scaled_kernel"),
        (1, 1, "masked"),
    ],
)
def test_auto_on_this_backend(heads, kernel, expected):
    """JAX never gathers: a one-head spatial layer masks there."""
    layer = MSGCConv2D(8, kernel, heads=heads)
    layer.build((None, 6, 6, 16))
    assert layer.active_implementation == expected


@pytest.mark.skipif(not GATHERS, reason="JAX refuses the gathered form")
def test_training_takes_the_masked_form_and_moves_the_generators(monkeypatch):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="body")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.Model(inputs, keras.layers.Dense(3, name="predictions")(x))
    model = msgc.convert(
        dense, lambda l: {"heads": 4} if l.name == "body" else None,
        implementation="gather",
    )  # fmt: skip
    msgc.compile_for_msgc(model, steps_per_epoch=1, epochs=1)
    generator = model.get_layer("body").mask_generator
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    model.fit(x, np.arange(4) % 3, epochs=1, verbose=0)  # builds the metrics
    before = numpy(generator.expand.kernel).copy()

    def no_skipping(*args):
        raise AssertionError("an inference form ran in training")

    monkeypatch.setattr(MSGCConv2D, "_skipping", no_skipping)
    model.fit(x, np.arange(4) % 3, epochs=1, verbose=0)
    assert not np.allclose(numpy(generator.expand.kernel), before)
    monkeypatch.undo()
    assert model.get_layer("body").active_implementation == "gather"


def test_implementation_and_granularity_are_saved_and_checked():
    form = "gather" if GATHERS else "masked"
    layer = MSGCConv2D(8, 3, granularity=2, implementation=form)
    config = MSGCConv2D.from_config(layer.get_config()).get_config()
    assert (config["implementation"], config["granularity"]) == (form, 2)
    with pytest.raises(ValueError, match="implementation='dense'"):
        MSGCConv2D(8, 3, implementation="dense")


def test_jax_refuses_the_gathered_form_with_the_fix(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="implementation='auto'"):
        MSGCConv2D(8, 3, implementation="gather")


@pytest.mark.skipif(not GATHERS, reason="JAX refuses the gathered form")
def test_gathering_models_are_not_compiled_with_xla():
    model = applications.MSGCResNet18(
        input_shape=(32, 32, 3), classes=4, implementation="gather"
    )
    assert not all(l.supports_jit for l in keras_internals.all_layers(model))
    masked = applications.MSGCResNet18(
        input_shape=(32, 32, 3), classes=4, implementation="masked"
    )
    assert all(
        l.supports_jit for l in keras_internals.all_layers(masked)
        if isinstance(l, MSGCConv2D)
    )  # fmt: skip


def test_convert_passes_the_implementation():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    dense = keras.Model(inputs, keras.layers.Conv2D(8, 3, padding="same", name="b")(x))
    form = "gather" if GATHERS else "masked"
    model = msgc.convert(
        dense, lambda l: {"heads": 2} if l.name == "b" else None, implementation=form
    )
    assert model.get_layer("b").implementation == form


def _small_msgc_network():
    """A one-head 3x3, a 4-head 3x3 and a 4-head 1x1 MSGC layer: the three
    rules of "auto", in a network that exports in seconds."""
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="stem")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="one")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="four")(x)
    x = keras.layers.Conv2D(16, 1, use_bias=False, name="pointwise")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.Model(inputs, keras.layers.Dense(5, name="predictions")(x))
    heads = {"one": 1, "four": 4, "pointwise": 4}
    return msgc.convert(
        dense, lambda l: {"heads": heads[l.name]} if l.name in heads else None
    )


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "fmt, expected",
    [
        # TensorFlow serves the SavedModel in the layers' own forms (the batch
        # is unknown there: the per-sample kernel's branch is in the graph).
        (
            "savedmodel",
            {"one": "auto", "four": "scaled_kernel", "pointwise": "scaled_kernel"},
        ),
        # The converters get per-sample 1x1 kernels (batched products) and
        # the masked form elsewhere; LiteRT takes the same forms
        # (benchmarks/msgc_latency.py --exports runs it).
        ("onnx", {"one": "masked", "four": "masked", "pointwise": "scaled_kernel"}),
    ],
)
def test_exports_run_each_runtimes_form_and_match_keras(fmt, expected, tmp_path):
    from keras_igc import export

    keras.utils.set_random_seed(0)
    model = _small_msgc_network()
    scramble_generators(model, per_sample=False)
    result = export.export(model, str(tmp_path), (fmt,), verbose=False)
    forms = {entry["layer"]: entry["form"] for entry in result.folding[fmt].msgc_layers}
    assert forms == expected
    rows = export.check(model, result.artifacts, batch_sizes=(1, 3), runs=1)
    for row in rows:
        assert row["max_abs_diff"] <= 1e-5 * row["max_abs_output"], row


@pytest.mark.tensorflow_only
def test_the_litert_forms_reshape_to_constant_shapes(tmp_path):
    """The masked and per-sample-kernel forms write no SHAPE op, which
    XNNPACK would leave outside its graph."""
    from keras_igc import export

    keras.utils.set_random_seed(0)
    result = export.export(
        _small_msgc_network(), str(tmp_path), ("litert",), verbose=False
    )
    interpreter = export.litert.make_interpreter(model_path=result.artifacts["litert"])
    names = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "BATCH_MATMUL" in names and "SHAPE" not in names

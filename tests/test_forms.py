"""keras_igc.forms: one rule table per runtime, each rule backed by a results
file, and the one method through which a layer takes its form."""

import dataclasses
import pathlib

import keras
import numpy as np
import pytest

import keras_igc
from keras_igc import cli, forms

ROOT = pathlib.Path(__file__).parents[1]


def test_every_runtime_has_one_rule_for_every_kind():
    for runtime in forms.RUNTIMES:
        assert set(forms.RULES[runtime]) == set(forms.FORMS), runtime


@pytest.mark.parametrize(
    "rule",
    [r for rules in forms.RULES.values() for r in rules.values() if r.source],
    ids=lambda r: f"{r.runtime}-{r.kind}",
)
def test_each_rule_names_a_results_file_that_exists(rule):
    assert (ROOT / rule.source).is_file(), rule.source
    assert rule.summary


def built_layers():
    block = keras_igc.IGCConv2D(20, 2, padding="same")
    block.build((None, 8, 8, 40))
    conv = keras_igc.GroupConv2D(40, 1, groups=20)
    conv.build((None, 8, 8, 20))
    shuffle = keras_igc.ChannelShuffle(4)
    shuffle.build((None, 8, 8, 8))
    msgc = keras_igc.MSGCConv2D(8, 1, heads=2)
    msgc.build((None, 8, 8, 8))
    return [block, conv, shuffle, msgc]


@pytest.mark.parametrize("runtime", forms.RUNTIMES)
def test_every_layer_takes_a_form_of_its_kind_in_every_runtime(runtime):
    for layer in built_layers():
        choice = forms.choose(layer, runtime)
        assert choice.form in forms.FORMS[choice.kind] and choice.why
        assert choice.runtime == runtime
        layer.set_execution_form(choice)
        assert layer.execution_form is choice


def test_a_layer_takes_its_keras_form_when_built_and_any_other_on_request():
    block, conv, *_ = built_layers()
    assert block.execution_form == forms.choose(block, "keras")
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 40)).astype("float32")
    expected = keras.ops.convert_to_numpy(block(x))
    for form in ("grouped", "grouped_primary", "igc"):
        block.set_execution_form(forms.forced("igc_block", form, "litert",
                                              forms.describe(block)[1]))  # fmt: skip
        got = keras.ops.convert_to_numpy(block(x))
        np.testing.assert_allclose(
            got, expected, rtol=0, atol=1e-5 * abs(expected).max()
        )
    with pytest.raises(ValueError, match="takes an 'igc_block' form"):
        block.set_execution_form(forms.choose(conv, "keras"))


# Wide enough blocks that no backend's rule takes the dense-equivalent kernel.
@pytest.mark.parametrize("L, M, secondary", [(60, 2, "dense"), (40, 4, "grouped")])
def test_keras_runs_a_wide_secondary_grouped_and_gives_the_same_outputs(
    L, M, secondary
):
    block = keras_igc.IGCConv2D(L, M, padding="same")
    block.build((None, 4, 4, L * M))
    threshold = forms.GROUPED_SECONDARY_FROM["keras"]
    assert (L * (M - 1) >= threshold) == (secondary == "grouped")
    assert block.execution_form.secondary == secondary
    assert f"L*(M-1) = {L * (M - 1)}" in block.execution_form.why
    x = np.random.default_rng(0).normal(size=(2, 4, 4, L * M)).astype("float32")
    # In training: inference may run a dense secondary as a convolution (below).
    expected = keras.ops.convert_to_numpy(block(x, training=True))
    other = "dense" if secondary == "grouped" else "grouped"
    block.set_execution_form(dataclasses.replace(block.execution_form, secondary=other))
    got = keras.ops.convert_to_numpy(block(x, training=True))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * abs(expected).max())
    # The layer's own implementation keeps the rule's secondary.
    own = keras_igc.IGCConv2D(L, M, implementation="grouped")
    own.build((None, 4, 4, L * M))
    assert own.execution_form.secondary == secondary


@pytest.mark.parametrize("L, M", [(60, 2), (40, 4)])
def test_keras_infers_a_dense_secondary_as_one_convolution_on_tensorflow(L, M):
    """On TensorFlow, inference runs a dense secondary as a 1x1 convolution
    op, into which Grappler fuses the BatchNorm after it; training keeps the
    matmul, and a grouped secondary keeps its products; the same outputs."""
    block = keras_igc.IGCConv2D(L, M, padding="same")
    block.build((None, 4, 4, L * M))
    dense = block.execution_form.secondary == "dense"
    converts = dense and keras.backend.backend() == "tensorflow"
    assert block.execution_form.inference_secondary == ("conv" if converts else None)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, L * M)).astype("float32")
    inferred = keras.ops.convert_to_numpy(block(x))
    trained = keras.ops.convert_to_numpy(block(x, training=True))
    np.testing.assert_allclose(
        inferred, trained, rtol=0, atol=1e-5 * abs(trained).max()
    )
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def products(training):
            traced = tf.function(lambda v: block(v, training=training))
            graph = traced.get_concrete_function(tf.TensorSpec(x.shape)).graph
            types = {op.type for op in graph.get_operations()}
            return types & {"MatMul", "BatchMatMulV2"}

        assert bool(products(training=False)) == (not converts)
        assert products(training=True)


def test_litert_merges_narrow_groups_and_says_why():
    _, conv, *_ = built_layers()
    choice = forms.choose(conv, "litert")
    # 20 groups of 2 outputs from 1 input: 4 groups of 5 (10 outputs each).
    assert (choice.form, choice.merge) == ("grouped", 5)
    assert "as 4 groups of 5" in choice.why
    assert forms.choose(conv, "onnx").merge == 1


def test_overrides_and_runtimes_are_checked():
    block, *_ = built_layers()
    with pytest.raises(ValueError, match="runtime='tflite'"):
        forms.choose(block, "tflite")
    with pytest.raises(ValueError, match="block_form='sparse'"):
        forms.choose(block, "onnx", {"igc_block": "sparse"})
    with pytest.raises(TypeError, match="Dense 'dense' has no execution forms"):
        forms.choose(keras.layers.Dense(2, name="dense"), "keras")
    sparse = forms.choose(block, "converter", {"igc_block": "auto_sparse"})
    assert sparse.form != "dense"


def test_the_command_line_prints_the_rule_table(capsys):
    assert cli.main(["info", "--forms"]) == 0
    printed = capsys.readouterr().out
    from keras_igc.export import runtimes

    assert printed.strip() == "\n\n".join(
        [runtimes.table(), forms.rules_table(), runtimes.int8_rules_table()]
    )
    for runtime in forms.RUNTIMES:
        assert f"| {runtime} | igc_block |" in printed


def _unmerged(layer):
    """`layer` set to its Keras form without merged groups."""
    layer.set_execution_form(dataclasses.replace(layer.execution_form, merge=1))
    return layer


def test_keras_on_tensorflow_cpu_merges_narrow_groups_elsewhere_not():
    block = keras_igc.IGCConv2D(24, 2, padding="same")
    block.build((None, 8, 8, 48))
    conv = keras_igc.GroupConv2D(40, 3, groups=20, padding="same")
    conv.build((None, 8, 8, 20))
    wide = keras_igc.IGCConv2D(2, 16, padding="same")
    wide.build((None, 8, 8, 32))
    merges = forms._tensorflow_cpu_grouped_kernel("float32")
    # 24 partitions of 2 outputs as 3 groups of 16; 20 groups of 2 as 4 of 10.
    assert block.execution_form.merge == (8 if merges else 1)
    assert conv.execution_form.merge == (5 if merges else 1)
    assert wide.execution_form.merge == 1  # 16 outputs a group already
    pair = keras_igc.GroupConv2D(8, 1, groups=2)
    pair.build((None, 8, 8, 8))
    assert pair.execution_form.merge == 1  # two groups stay two
    if merges:
        assert "as 3 groups of 8" in block.execution_form.why
        assert "NOTES.md" in block.execution_form.why


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("kind", ["igc_block", "grouped_conv"])
def test_merged_groups_give_the_same_outputs_and_gradients(kind):
    """Merged in the graph from the layer's own kernel: the zeros between
    the groups get no gradient, the kernel trains as unmerged."""
    import tensorflow as tf

    def layer():
        if kind == "igc_block":
            built = keras_igc.IGCConv2D(24, 2, padding="same", use_bias=True)
        else:
            built = keras_igc.GroupConv2D(48, 3, groups=24, padding="same")
        built.build((None, 6, 6, 48))
        return built

    merged, plain = layer(), _unmerged(layer())
    assert merged.execution_form.merge > 1 and plain.execution_form.merge == 1
    rng = np.random.default_rng(3)
    weights = [rng.normal(size=w.shape).astype("float32") for w in merged.weights]
    merged.set_weights(weights)
    plain.set_weights(weights)
    x = tf.constant(rng.normal(size=(2, 6, 6, 48)).astype("float32"))
    results = []
    for built in (merged, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = built(x)
            loss = tf.reduce_sum(y * y)
        grads = tape.gradient(loss, [x, *built.trainable_weights])
        results.append([y.numpy(), *[g.numpy() for g in grads]])
    for got, expected in zip(*results, strict=True):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)

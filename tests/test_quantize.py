"""8-bit exports: LiteRT full-integer and ONNX QDQ, calibrated on a dataset,
checked against the float model on held-out examples (TensorFlow only)."""

import json

import keras
import numpy as np
import pytest

import keras_igc
from keras_igc import cli, data, export, forms
from keras_igc.export import quantize, runtimes
from keras_igc.export.check import INT8_BATCHES

pytestmark = pytest.mark.tensorflow_only


def held_out(count=360):
    batches = data.load("digits", "eval", batch_size=120)
    return np.concatenate([b.numpy() for b, _ in batches])[:count]


@pytest.fixture(scope="module")
def digits_model():
    """An IGC network (a grouped projection, IGC blocks, BatchNorms) trained
    a few epochs on scikit-learn's digits: logits that mean something."""
    keras.utils.set_random_seed(0)
    shape = held_out(1).shape[1:]
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    for strides in (2, 1, 2):
        x = keras_igc.IGCConv2D(8, 2, strides=strides, padding="same", use_bias=False)(
            x
        )
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras_igc.GroupConv2D(32, 1, groups=8, use_bias=False)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )  # fmt: skip
    model.fit(data.load("digits", "train", batch_size=64, seed=0), epochs=4, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(digits_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("int8")
    result = export.export(
        digits_model, str(directory), ["litert", "onnx"], quantize="int8",
        calibration="digits:256", verbose=False,
    )  # fmt: skip
    return directory, result


def test_int8_artifacts_agree_with_the_float_model_and_are_smaller(
    digits_model, exported
):
    directory, result = exported
    assert (directory / "model_int8.tflite").is_file()
    assert (directory / "model_int8.onnx").is_file()
    rows = export.check_quantized(digits_model, result.artifacts, held_out())
    assert {r["format"] for r in rows} == {"litert_int8", "onnx_int8"}
    for row in rows:
        assert row["examples"] == 360
        assert row["agreement"] >= export.MIN_AGREEMENT, row
        assert row["max_logit_error"] < 0.2, row
    # A network this small is mostly file structure (and ONNX's QDQ nodes
    # carry a scale and a zero point each), so only LiteRT's shrinks here.
    (litert,) = [r for r in rows if r["format"] == "litert_int8"]
    assert litert["bytes"] < 0.7 * litert["float_bytes"], litert
    # Each 8-bit file timed against its float file, and its misses named.
    for row in rows:
        assert set(row["time_ratio"]) == set(INT8_BATCHES), row
        assert row["size_ratio"] == row["bytes"] / row["float_bytes"]
        sizes = ["size"] if row["size_ratio"] > export.INT8_GOALS["size"] else []
        times = [
            b for b, r in row["time_ratio"].items() if r > export.INT8_GOALS["time"]
        ]
        assert len(row["misses"]) == len(sizes) + len(times), row
        assert all("int8" in miss and "goal" in miss for miss in row["misses"])
    assert "time of float, batch 32" in export.format_quantized(rows)


def test_the_report_says_the_scheme_the_calibration_and_what_stayed_float(exported):
    directory, result = exported
    with open(directory / export.REPORT_FILE) as f:
        report = json.load(f)["quantization"]
    assert report["scheme"] == "int8" and report["calibration_examples"] == 256
    assert report == result.quantization.to_dict()
    # LiteRT runs every convolution in int8.
    assert not {"CONV_2D", "DEPTHWISE_CONV_2D"} & set(report["float_ops"]["litert"])
    # ONNX Runtime: the grouped convolutions of 2 inputs a group and 8 groups
    # (the IGC primaries, the projection) stay float, each with its reason;
    # every other convolution is int8.
    kept = report["kept_float"]["onnx"]
    assert len(kept) == 4 and all(
        "8 groups of 2 inputs" in why for why in kept.values()
    )
    # The convolutions after them read their float outputs (below), so they
    # compute in float too, from int8 weights: one after each IGC primary.
    assert report["float_ops"]["onnx"].get("Conv") == len(kept) + 3


def test_onnx_runtime_runs_the_kept_float_convolutions_in_float(exported):
    """No quantize-dequantize pair after a kept-float convolution: ONNX Runtime
    would fuse it with the convolution into a QLinearConv when it loads the
    file, quantizing the weights the rule kept float."""
    import onnx
    import onnxruntime as ort

    directory, result = exported
    path = str(directory / "model_int8.onnx")
    graph = onnx.load(path).graph
    kept = result.quantization.kept_float["onnx"]
    outputs = {node.output[0] for node in graph.node if node.name in kept}
    assert len(outputs) == len(kept)
    assert not [n.name for n in graph.node
                if n.op_type == "QuantizeLinear" and n.input[0] in outputs]  # fmt: skip
    initializers = {i.name for i in graph.initializer}
    assert initializers <= {name for node in graph.node for name in node.input}
    # What ONNX Runtime runs after its own fusions: the kept convolutions as
    # float Conv, the others as QLinearConv.
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(directory / "optimized.onnx")
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    ran = onnx.load(options.optimized_model_filepath).graph.node
    assert sum(n.op_type == "QLinearConv" for n in ran) >= 1
    float_convs = [n for n in ran if n.op_type in ("Conv", "FusedConv")]
    assert len(float_convs) >= len(kept), [n.op_type for n in ran]


def test_a_full_integer_litert_file_takes_int8_and_dynamic_keeps_float_io(
    digits_model, tmp_path
):
    from keras_igc.export.litert import make_interpreter

    export.export(
        digits_model, str(tmp_path / "io"), ["litert"], quantize="int8",
        calibration=held_out(64), int8_io=True, verbose=False,
    )  # fmt: skip
    path = str(tmp_path / "io" / "model_int8.tflite")
    (source,) = make_interpreter(model_path=path).get_input_details()
    assert source["dtype"] == np.int8
    rows = export.check_quantized(
        digits_model, {"litert": str(tmp_path / "io" / "model.tflite"),
                       "litert_int8": path}, held_out(),
    )  # fmt: skip
    assert rows[0]["agreement"] >= export.MIN_AGREEMENT
    result = export.export(
        digits_model, str(tmp_path / "dyn"), ["litert"], quantize="dynamic",
        verbose=False,
    )  # fmt: skip
    assert result.quantization.calibration_examples == 0
    (source,) = make_interpreter(
        model_path=result.artifacts["litert_int8"]
    ).get_input_details()
    assert source["dtype"] == np.float32


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quantize", "int4"], "invalid choice: 'int4'"),
        (["--min-agreement", "2"], "expected a fraction in (0, 1]"),
    ],
)
def test_bad_quantize_flags_are_named_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.main(["export", "x.keras", "--output", "o", *argv])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--int8-io"], "--int8-io needs --quantize int8"),
        (["--quantize", "dynamic", "--int8-io"], "--int8-io needs --quantize int8"),
        (["--calibration", "digits"], "add --quantize int8"),
        (["--quantize", "int8"], "needs --calibration DATASET[:N]"),
        (["--quantize", "int8", "--calibration", "digits:0"], "digits:300"),
        (["--quantize", "int8", "--calibration", "digits:-5"], "positive number"),
        (["--quantize", "int8", "--calibration", "mnist"], "Unknown calibration"),
    ],
)
def test_bad_quantize_arguments_are_refused_with_the_fix(
    digits_model, tmp_path, argv, message, capsys
):
    path = str(tmp_path / "m.keras")
    digits_model.save(path)
    out = tmp_path / "out"
    assert cli.main(["export", path, "--output", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "model_int8.tflite").exists()


def _endless():
    import tensorflow as tf

    return tf.data.Dataset.from_tensors(np.zeros((1, 32, 32, 1), "float32")).repeat()


def _generator_without_end():
    while True:
        yield np.zeros((4, 32, 32, 1), "float32")


def _with(index, value):
    images = held_out(16)
    images[index, 3, 4, 0] = value
    return images


@pytest.mark.parametrize(
    "calibration, message",
    [
        (lambda: np.zeros((8, 32, 32, 3), "float32"), r"do not fit.*1 channels"),
        (lambda: np.zeros((0, 32, 32, 1), "float32"), r"at least one image"),
        (lambda: _with(5, np.inf), r"1 calibration image\(s\) hold NaN.*index 5"),
        (lambda: _with(0, np.nan), r"NaN or infinite.*index 0"),
        (lambda: np.full((2, 32, 32, 1), "x"), r"must be numbers.*dtype <U1"),
        (_endless, r"repeats without end.*dataset.take"),
        (_generator_without_end, r"more than 10000 examples.*take"),
        (lambda: iter([]), r"empty"),
        (lambda: 42, r"an array of images.*Received: int"),
    ],
    ids=["channels", "empty", "inf", "nan", "strings", "endless", "generator",
         "empty-stream", "not-images"],
)  # fmt: skip
def test_calibration_data_is_checked_before_it_is_used(
    digits_model, tmp_path, calibration, message
):
    """Each fault of its family is a message naming the fix, before anything
    runs: an `inf` once crashed the converter (exit 139) and left a scratch
    folder behind."""
    with pytest.raises(ValueError, match=message):
        export.export(
            digits_model, str(tmp_path / "out"), ["litert", "onnx"],
            quantize="int8", calibration=calibration(), verbose=False,
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_a_bad_quantize_scheme_is_named(digits_model, tmp_path):
    with pytest.raises(ValueError, match="quantize='int4'"):
        export.export(digits_model, str(tmp_path), quantize="int4")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "geometry, onnx_form",
    [
        (forms.Geometry(1, 64, 64, (3, 3)), "int8"),  # dense
        (forms.Geometry(2, 100, 100, (1, 1)), "int8"),  # 2 groups
        (forms.Geometry(96, 1, 1, (3, 3)), "int8"),  # depthwise
        (forms.Geometry(100, 1, 2, (3, 3)), "float"),  # channel multiplier
        (forms.Geometry(100, 2, 2, (3, 3)), "float"),  # IGC primary
        (forms.Geometry(4, 64, 64, (3, 3)), "int8"),  # MSGC's 4 heads, masked
    ],
)
def test_int8_forms_follow_what_each_runtime_runs_fast(geometry, onnx_form):
    # benchmarks/README.md, "8-bit exports": ONNX Runtime's int8 kernels
    # for many narrow groups (not depthwise) measured slower than float.
    assert runtimes.int8_form("onnx", geometry)[0] == onnx_form
    assert runtimes.int8_form("litert", geometry)[0] == "int8"
    with pytest.raises(ValueError, match="No 8-bit files for runtime 'savedmodel'"):
        runtimes.int8_form("savedmodel", geometry)


@pytest.mark.parametrize("runtime", list(runtimes.INT8_RUNTIMES))
def test_each_int8_rule_names_a_results_file_that_exists(runtime):
    import pathlib

    rule = runtimes.INT8_RUNTIMES[runtime].INT8_RULE
    assert (rule.runtime, rule.kind) == (runtime, "int8")
    assert (pathlib.Path(__file__).parents[1] / rule.source).is_file()
    assert rule.summary and rule.summary in runtimes.int8_rules_table()


def test_the_command_line_knows_every_scheme():
    assert cli.QUANTIZE_SCHEMES == quantize.SCHEMES


@pytest.fixture(scope="module")
def msgc_network():
    """An MSGC network on digits-sized images: a one-head 3x3 and a 4-head
    1x1 MSGC layer whose gates vary per example (about a third open), under
    Keras' default names (`conv_1` is also `conv`'s scope with a suffix)."""
    from harness import scramble_generators

    from keras_igc import msgc

    keras.utils.set_random_seed(0)
    inputs = keras.Input(held_out(1).shape[1:])
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="stem")(inputs)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 1, name="conv_1")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.Model(inputs, keras.layers.Dense(10)(x))
    heads = {"conv": 1, "conv_1": 4}
    model = msgc.convert(
        dense, lambda l: {"heads": heads[l.name]} if l.name in heads else None
    )
    scramble_generators(model)
    return model


def test_msgc_gates_say_what_they_run_in_and_their_flips_are_counted(
    msgc_network, tmp_path
):
    import onnx

    images = held_out(120)
    result = export.export(
        msgc_network, str(tmp_path), ["litert", "onnx"], quantize="int8",
        calibration=held_out(64), verbose=False,
    )  # fmt: skip
    assert result.quantization.gate_logits == {"litert": "int8", "onnx": "int8"}
    rows = {
        r["format"]: r
        for r in export.check_quantized(msgc_network, result.artifacts, images)
    }
    for row in rows.values():
        assert set(row["gate_flips_by_layer"]) == {"conv", "conv_1"}
        assert 0 <= row["gate_flips"] <= row["examples_with_flips"] <= 1
    assert "gate flips" in export.format_quantized(list(rows.values()))
    # The float files read as if 8-bit: their gates are the Keras model's.
    as_float = {
        "litert_int8": result.artifacts["litert"],
        "onnx_int8": result.artifacts["onnx"],
    }
    for row in export.check_quantized(msgc_network, as_float, images):
        assert row["gate_flips"] == 0 and row["agreement"] == 1, row
    # The second layer's decisions inverted (its comparison comes second in
    # the graph's order): every one of them counts as a flip, the first
    # layer's none.
    graph = onnx.load(result.artifacts["onnx"])
    comparisons = [
        n for n in graph.graph.node
        if n.op_type == "GreaterOrEqual" and "/gate" in n.name
    ]  # fmt: skip
    assert len(comparisons) == 2
    comparisons[-1].op_type = "Less"
    onnx.save(graph, str(tmp_path / "inverted.onnx"))
    (row,) = export.check_quantized(
        msgc_network, {"onnx_int8": str(tmp_path / "inverted.onnx")}, images
    )
    assert row["gate_flips_by_layer"] == {"conv": 0.0, "conv_1": 1.0}
    assert row["examples_with_flips"] == 1.0


def test_a_quantization_aware_msgc_network_exports_its_gates_in_int8(
    msgc_network, tmp_path
):
    """QAT of an MSGC network: its int8 files take the learned ranges, every
    op but the gates' casts int8 in LiteRT (the MAC ledger stays out), and
    `check_quantized` counts the gate flips of each layer against the QAT
    model's own decisions."""
    from keras_igc import quantization

    qat = quantization.quantize_aware(msgc_network)
    images, labels = held_out(), np.arange(360) % 10
    qat.compile(keras.optimizers.SGD(1e-4), "sparse_categorical_crossentropy")
    qat.fit(images[:64], labels[:64], batch_size=16, epochs=1, verbose=0)
    result = export.export(
        qat, str(tmp_path), ["litert", "onnx"], quantize="int8", verbose=False
    )
    assert result.quantization.quantize_aware
    assert result.quantization.gate_logits["litert"] == "int8"
    # Float: only the gates' cast and its reshape, on (batch, heads, C).
    assert set(result.quantization.float_ops["litert"]) <= {"CAST", "RESHAPE"}
    for row in export.check_quantized(qat, result.artifacts, images[64:184]):
        assert set(row["gate_flips_by_layer"]) == {"conv", "conv_1"}, row
        assert row["gate_flips"] < 0.01 and row["agreement"] >= 0.95, row

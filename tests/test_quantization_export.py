"""The int8 files of a quantization-aware model: written from the ranges it
learned (no calibration), every layer as it trained, agreeing with the model
itself; and `keras-igc train --quantize-aware --from`'s checks (TensorFlow:
the exports and the command line run there)."""

import collections
import json

import keras
import numpy as np
import pytest

import keras_igc
from keras_igc import cli, data, export, preprocessing, quantization
from keras_igc.export.dependencies import require

pytestmark = pytest.mark.tensorflow_only


def held_out():
    return np.concatenate([b.numpy() for b, _ in data.load("digits", "eval")])


@pytest.fixture(scope="module")
def qat_model():
    """A small IGC network trained on digits, then fine-tuned under int8
    rounding for an epoch."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    for strides in (2, 1):
        x = keras_igc.IGCConv2D(8, 2, strides=strides, padding="same", use_bias=False)(
            x
        )
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    train = data.load("digits", "train", batch_size=64, seed=0)
    model.fit(train, epochs=12, verbose=0)
    qat = quantization.quantize_aware(model)
    qat.compile(
        keras.optimizers.SGD(0.001, momentum=0.9), "sparse_categorical_crossentropy"
    )
    qat.fit(train, epochs=1, verbose=0)
    return qat


@pytest.fixture(scope="module")
def exported(qat_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("qat")
    result = export.export(
        qat_model, str(directory), ["litert", "onnx"], quantize="int8", verbose=False
    )
    return directory, result


def test_int8_files_of_a_qat_model_agree_with_it(qat_model, exported):
    _, result = exported
    report = result.quantization
    assert report.quantize_aware and report.calibration_examples == 0
    # Every LiteRT op in int8, from the learned ranges.
    assert report.float_ops["litert"] == {}
    rows = export.check_quantized(qat_model, result.artifacts, held_out())
    for row in rows:
        assert row["agreement"] >= 0.995, row
    # ONNX's holds each IGC secondary as one dense 1x1 kernel (the
    # permutations folded in), larger than the float file's grouped one on a
    # network this small; --check reports it (test_quantize.py).
    litert = next(row for row in rows if row["format"] == "litert_int8")
    assert litert["bytes"] < litert["float_bytes"]


def test_the_onnx_file_stores_the_rounded_kernels_as_int8(exported):
    onnx = require("onnx", "test")
    from onnx import numpy_helper

    _, result = exported
    graph = onnx.load(result.artifacts["onnx_int8"]).graph
    kept = result.quantization.kept_float["onnx"]
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    stored = collections.Counter()
    for node in graph.node:
        if node.op_type not in ("Conv", "MatMul") or node.name in kept:
            continue
        dequantize = producers[node.input[1]]
        assert dequantize.op_type == "DequantizeLinear", node.name
        stored[weights[dequantize.input[0]].dtype.name] += 1
    assert stored == {"int8": 4}  # the stem, two secondaries, the classifier
    assert len(kept) == 2  # the two 8-group primaries run in float


def test_the_float_files_hold_the_float_model_of_the_rounded_weights(
    qat_model, exported
):
    _, result = exported
    rows = export.check(qat_model, result.artifacts, batch_sizes=(3,), runs=1)
    assert {r["format"] for r in rows} == {"keras", "litert", "onnx"}
    assert max(r["max_abs_diff"] for r in rows) < 1e-5


def test_a_qat_model_takes_no_calibration(qat_model, tmp_path):
    with pytest.raises(ValueError, match="quantization-aware.*Leave calibration out"):
        export.export(
            qat_model, str(tmp_path / "out"), ["litert"], quantize="int8",
            calibration="digits:32", verbose=False,
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def float_run(tmp_path_factory):
    """A finished float run folder as `train` leaves it (model, record,
    FINISHED), of a small network of the user's."""
    folder = tmp_path_factory.mktemp("float-run")
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(8, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="mine")
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.save(folder / "model.keras")
    preprocessing.for_dataset("digits").save(str(folder))
    (folder / "FINISHED").write_text(json.dumps({"epochs": 1}))
    return folder


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quantize-aware", "dynamic", "--from", "{run}"], "int8 rounding only"),
        (["--quantize-aware"], "name its run folder with --from"),
        (["--from", "{run}"], "add --quantize-aware"),
        (["--quantize-aware", "--from", "{run}", "--output", "{run}"], "another"),
        (["--quantize-aware", "--from", "{empty}"], "holds no finished run"),
        (
            ["--quantize-aware", "--from", "{run}", "--dataset", "cifar10"],
            "trained on 'digits'",
        ),
        (
            ["--quantize-aware", "--from", "{run}", "--model", "IGC-L24M2"],
            "trained 'mine', not --model IGC-L24M2",
        ),
        (["--quantize-aware", "--from", "{run}", "--bn-batch", "8"], "--bn-batch"),
        (["--quantize-aware", "--from", "{run}", "--depth", "8"], "--depth without"),
    ],
)
def test_train_quantize_aware_names_what_does_not_fit(
    float_run, tmp_path, argv, message, capsys
):
    folders = {"run": str(float_run), "empty": str(tmp_path)}
    argv = [arg.format(**folders) for arg in argv]
    defaults = {"--dataset": "digits", "--output": str(tmp_path / "qat")}
    for flag, value in defaults.items():
        if flag not in argv:
            argv += [flag, value]
    assert cli.main(["train", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "qat").exists()


class Interrupt(keras.callbacks.Callback):
    """Stops the run after an epoch, as a crash would, keeping its state."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            self.weights = [w.copy() for w in self.model.get_weights()]
            raise KeyboardInterrupt


class Start(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = self.model.get_weights()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_a_qat_run_resumes_exactly_and_freezes_in_its_second_half(float_run, tmp_path):
    """`train(quantize_aware=True)` is a run like any other: interrupted, it
    resumes where its backup left it, with every range, statistic and the
    freeze switch; the freeze comes at the epoch `qat_freeze_epoch` says."""
    from keras_igc import training

    model = keras.saving.load_model(float_run / "model.keras")
    args = dict(epochs=3, steps_per_epoch=2, seed=0, verbose=0, quantize_aware=True)
    interrupt = Interrupt()
    with pytest.raises(KeyboardInterrupt):
        training.train(model, "digits", str(tmp_path), callbacks=[interrupt], **args)
    start = Start()
    qat, _ = training.train(model, "digits", str(tmp_path), callbacks=[start], **args)
    assert start.epochs == [2]
    for restored, saved in zip(start.weights, interrupt.weights, strict=True):
        np.testing.assert_array_equal(restored, saved)
    assert training.qat_freeze_epoch(training.qat_recipe("digits", epochs=3)) == 2
    frozen = [float(layer.batch_norm_frozen) for layer in qat.layers
              if isinstance(layer, quantization.QuantizeAwareConvolution)
              and layer.batch_norm is not None]  # fmt: skip
    assert frozen == [1.0]
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert quantization.is_quantize_aware(loaded)

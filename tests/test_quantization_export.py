"""A quantization-aware run and its export's arguments: `keras-igc train
--quantize-aware --from`'s checks, the exact resume of a QAT run, no
calibration for a QAT model (TensorFlow: the runs, the exports and the
command line run there). The int8 files of a QAT run, checked against it,
are on the user's path (tests/user_path.py)."""

import json

import keras
import numpy as np
import pytest

from keras_igc import cli, export, preprocessing, quantization

pytestmark = pytest.mark.tensorflow_only


def test_a_qat_model_takes_no_calibration(float_run, tmp_path):
    """Its ranges are learned: a calibration is refused before anything is
    written. (Its int8 files, checked against it: tests/user_path.py.)"""
    qat = quantization.quantize_aware(
        keras.saving.load_model(float_run / "model.keras")
    )
    with pytest.raises(ValueError, match="quantization-aware.*Leave calibration out"):
        export.export(
            qat, str(tmp_path / "out"), ["litert"], quantize="int8",
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

"""The paper's recipe through model.fit, resuming, and the keras-igc command."""

import collections
import csv
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds
from harness import assert_close

import keras_igc
from keras_igc import cli, training

pytestmark = pytest.mark.tensorflow_only

QUICK = dict(depth=8, epochs=1, batch_size=16, steps_per_epoch=2, seed=0, verbose=0)


def test_learning_rate_drops_by_ten_after_the_releases_epochs():
    # 20 epochs: drops after epochs 10, 15 and 17 (the release's num_epochs*7/8
    # in integer arithmetic), from the first update of the next epoch on.
    recipe = training.paper_recipe("cifar10", epochs=20)
    assert recipe.boundaries == (10, 15, 17)
    schedule = training.learning_rate_schedule(recipe, steps_per_epoch=10)
    expected = {0: 0.1, 99: 0.1, 100: 0.01, 149: 0.01, 150: 1e-3, 169: 1e-3, 170: 1e-4}
    for step, rate in expected.items():
        assert float(schedule(step)) == pytest.approx(rate), step
    assert training.paper_recipe("cifar10", epochs=400).boundaries == (200, 300, 350)
    assert training.paper_recipe("cifar10", epochs=4).boundaries == (2, 3, 3)
    assert training.paper_recipe("cifar10", epochs=1).boundaries == ()


def test_recipe_defaults_and_batch_scaling():
    assert training.paper_recipe("cifar100") == training.Recipe(
        400, 64, 0.1, (200, 300, 350), devices=2
    )
    assert training.paper_recipe("cifar100").bn_batch == 32
    assert training.paper_recipe("svhn_cropped").epochs == 40
    assert training.paper_recipe("cifar10", batch_size=128).learning_rate == 0.2
    imagenet = training.paper_recipe("imagenet2012")
    assert (imagenet.epochs, imagenet.batch_size) == (120, 256)
    assert imagenet.boundaries == (30, 60, 90)
    assert imagenet.bn_batch == 64
    assert training.paper_recipe("imagenet2012", epochs=100).boundaries == (30, 60, 90)


def test_optimizer_is_the_releases_coupled_nesterov_sgd_on_every_weight():
    from keras_igc.optimizers import CoupledSGD

    optimizer = training.make_optimizer(training.paper_recipe("cifar10"), 10)
    assert isinstance(optimizer, CoupledSGD)
    assert optimizer.nesterov and optimizer.momentum == 0.9
    assert optimizer.coupled_weight_decay == 1e-4 and optimizer.weight_decay is None
    model = training.build_model("IGC-L24M2", "digits", depth=8)
    optimizer.build(model.trainable_variables)
    # The release decays every parameter, BatchNorm's gamma and beta included.
    assert {optimizer.decay_of(v) for v in model.trainable_variables} == {1e-4}


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(learning_rate=-1.0), "learning_rate.*-1.0"),
        (dict(learning_rate=float("nan")), "learning_rate.*nan"),
        (dict(epochs=0), "epochs.*0"),
        (dict(batch_size=0), "batch_size.*0"),
    ],
)
def test_bad_recipe_values_are_errors_naming_them(override, message):
    with pytest.raises(ValueError, match=message):
        training.paper_recipe("cifar10", **override)


def test_train_leaves_the_global_dtype_policy_as_it_found_it(tmp_path):
    before = keras.config.dtype_policy().name
    training.train(
        "IGC-L24M2", "digits", str(tmp_path), mixed_precision="mixed_bfloat16",
        **QUICK,
    )  # fmt: skip
    assert keras.config.dtype_policy().name == before


def test_fit_on_digits_leaves_model_history_checkpoints_and_plot(tmp_path):
    model, history = training.train("IGC-L24M2", "digits", str(tmp_path), **QUICK)
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 10)
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    for path in [
        "model.keras",
        "history.csv",
        "curves.png",
        "checkpoints/epoch-001.keras",
    ]:
        assert os.path.isfile(tmp_path / path), path
    assert os.listdir(tmp_path / "logs")
    assert not os.path.exists(tmp_path / "backup")  # removed once training ends


def _own_network(input_shape=(32, 32, 1), classes=10, cls=keras.Sequential):
    return cls(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(8, 3, padding="same", use_bias=False),
            keras_igc.IGCConv2D(4, 2, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes, activation="softmax"),
        ],
        name="own_igc",
    )


def test_train_takes_a_model_of_yours(tmp_path):
    quick = {k: v for k, v in QUICK.items() if k != "depth"}
    own = _own_network()
    model, history = training.train(own, "digits", str(tmp_path), **quick)
    assert isinstance(model.optimizer, keras_igc.optimizers.CoupledSGD)
    assert np.isfinite(history.history["loss"][0])
    saved = keras.saving.load_model(tmp_path / "model.keras")
    assert saved.name == "own_igc"
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 1)).astype("float32")
    assert_close(saved(x), model(x), rel=1e-6)
    for wrong, message in (
        (_own_network(classes=7), "7 outputs; 'digits' has 10 classes"),
        (_own_network(input_shape=(28, 28, 1)), "\\(28, 28, 1\\).*\\(32, 32, 1\\)"),
    ):
        with pytest.raises(ValueError, match=message):
            training.train(wrong, "digits", str(tmp_path / "wrong"), **quick)
    with pytest.raises(ValueError, match="model_options.*already built"):
        training.train(
            own, "digits", str(tmp_path / "options"), model_options={"width": 8},
            **quick,
        )  # fmt: skip


@keras.saving.register_keras_serializable(package="tests")
class _CountsTraces(keras.Sequential):
    """Counts the Python calls of its steps: TensorFlow makes one per trace."""

    traced = collections.Counter()

    def train_step(self, data):
        self.traced["train"] += 1
        return super().train_step(data)

    def test_step(self, data):
        self.traced["test"] += 1
        return super().test_step(data)


def test_train_and_evaluate_trace_each_step_once(tmp_path):
    """The optimizer and metrics are built before `fit` and `evaluate` trace
    their steps. Built while tracing (Keras' default on one device), they make
    TensorFlow trace each step twice: a third of a short run's time. A
    subclass of Sequential keeps its class, and its own steps, when `train`
    swaps its BatchNorm layers for ghost ones (Keras' clone drops it)."""
    quick = {k: v for k, v in QUICK.items() if k != "depth"}
    own = _own_network(cls=_CountsTraces)
    model, _ = training.train(own, "digits", str(tmp_path), **quick)
    assert type(model) is _CountsTraces and model is not own  # ghost BatchNorm
    assert _CountsTraces.traced == {"train": 1, "test": 1}
    _CountsTraces.traced.clear()
    result = training.evaluate(tmp_path / "model.keras", "digits")
    assert 0 <= result["accuracy"] <= 1
    assert _CountsTraces.traced == {"test": 1}


class _NeedsItsWidth(keras.Sequential):
    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.width = width


def test_a_subclass_that_cannot_be_rebuilt_is_refused_with_the_way_out():
    own = _own_network(cls=lambda layers, name: _NeedsItsWidth(8, layers=layers,
                                                                name=name))  # fmt: skip
    with pytest.raises(ValueError, match="_NeedsItsWidth 'own_igc'.*bn_batch='device'"):
        training.with_bn_batch(own, 8)
    assert training.with_bn_batch(own, None) is own


def test_fit_on_mock_cifar(tmp_path):
    with tfds.testing.mock_data(num_examples=40):
        model, history = training.train(
            "IGC-L4M8+Ident.", "cifar10", str(tmp_path), **QUICK
        )
    assert model.input_shape == (None, 32, 32, 3)
    assert np.isfinite(history.history["loss"][0])


class Interrupt(keras.callbacks.Callback):
    """Stops the run after an epoch, as a crash would, remembering the state."""

    def __init__(self, after_epoch):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.after_epoch:
            self.weights = [w.copy() for w in self.model.get_weights()]
            self.iterations = int(self.model.optimizer.iterations)
            raise KeyboardInterrupt


class Recorder(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = self.model.get_weights()
        self.iterations = int(self.model.optimizer.iterations)
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def interrupted(out, epochs, after_epoch):
    """`(Interrupt, train arguments)` of a run stopped after `after_epoch`."""
    args = dict(QUICK, epochs=epochs)
    interrupt = Interrupt(after_epoch=after_epoch)
    with pytest.raises(KeyboardInterrupt):
        training.train("RegConv-W16", "digits", str(out), callbacks=[interrupt], **args)
    return interrupt, args


def resumed(out, args, interrupt, epoch):
    """Run again; it starts at `epoch` with the interrupted run's state."""
    recorder = Recorder()
    training.train("RegConv-W16", "digits", str(out), callbacks=[recorder], **args)
    assert recorder.epochs[0] == epoch
    assert recorder.iterations == interrupt.iterations == epoch * 2
    for restored, saved in zip(recorder.weights, interrupt.weights, strict=True):
        np.testing.assert_array_equal(restored, saved)
    return recorder


def test_an_interrupted_run_resumes_at_the_next_epoch(tmp_path):
    interrupt, args = interrupted(tmp_path, epochs=3, after_epoch=1)
    recorder = resumed(tmp_path, args, interrupt, epoch=2)
    assert recorder.epochs == [2]
    with open(tmp_path / "history.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2", "3"]


def test_a_finished_run_is_not_overwritten(tmp_path):
    training.train("RegConv-W16", "digits", str(tmp_path), **QUICK)
    with pytest.raises(ValueError, match="already holds a finished run"):
        training.train("RegConv-W16", "digits", str(tmp_path), **QUICK)

    # Its final model deleted, or damaged: rebuilt from the last checkpoint.
    model = tmp_path / "model.keras"
    wanted = [w.copy() for w in keras.saving.load_model(model).get_weights()]
    archive = model.read_bytes()
    for damage in (model.unlink, lambda: model.write_bytes(archive[:1000])):
        damage()
        with pytest.raises(ValueError) as error:
            training.train("RegConv-W16", "digits", str(tmp_path), **QUICK)
        problem = "is missing" if damage == model.unlink else "does not load"
        assert f"its model.keras {problem}" in str(error.value)
        assert "rebuilt from" in str(error.value)
        assert "epoch-001.keras" in str(error.value)
        rebuilt = keras.saving.load_model(model).get_weights()
        for got, expected in zip(rebuilt, wanted, strict=True):
            np.testing.assert_array_equal(got, expected)

    # Nothing to rebuild it from: refused, saying what is wrong.
    model.unlink()
    (tmp_path / "checkpoints" / "epoch-001.keras").unlink()
    with pytest.raises(ValueError, match="model.keras is missing, and the last"):
        training.train("RegConv-W16", "digits", str(tmp_path), **QUICK)
    assert not model.exists()


def test_a_backup_of_keras_igc_0_1_0_resumes_at_its_epoch(tmp_path):
    """Keras' BackupAndRestore files, as keras-igc 0.1.0 wrote them."""
    interrupt, args = interrupted(tmp_path, epochs=2, after_epoch=0)
    backup = tmp_path / "backup"
    [snapshot] = list(backup.iterdir())
    os.replace(snapshot / "weights.weights.h5", backup / "latest.weights.h5")
    shutil.rmtree(snapshot)
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 1}')
    recorder = resumed(tmp_path, args, interrupt, epoch=1)
    assert recorder.epochs == [1]


def test_a_resumed_run_keeps_its_seed_batch_and_steps(tmp_path):
    _, args = interrupted(tmp_path, epochs=2, after_epoch=0)
    for change, message in [
        (dict(seed=1), "started with seed=0.*--seed 0"),
        (dict(batch_size=8), "started with batch_size=16.*--batch-size 16"),
        (dict(seed="0"), "`seed` must be an integer"),
        (dict(steps_per_epoch=3), "steps_per_epoch=2.*--steps-per-epoch 2"),
    ]:
        with pytest.raises(ValueError, match=message):
            training.train("RegConv-W16", "digits", str(tmp_path), **{**args, **change})
    # Without --seed, the recorded one.
    training.train("RegConv-W16", "digits", str(tmp_path), **dict(args, seed=None))


@pytest.mark.parametrize(
    "model, dataset, error",
    [
        ("IGC-L24M3", "digits", "Unknown model name"),
        ("IGC-L100M2+Ident.", "cifar10", "imagenet network"),
        ("IGC-L24M2", "mnist", "Unknown dataset"),
    ],
)
def test_bad_model_or_dataset(tmp_path, model, dataset, error):
    with pytest.raises(ValueError, match=error):
        training.train(model, dataset, str(tmp_path), **QUICK)


def test_cli_info(capsys):
    # train and evaluate on the command line: tests/user_path.py.
    assert cli.main(["info", "IGC-L24M2", "--depth", "8"]) == 0
    assert "| IGC-L24M2 D=8 | 32x32 | 48 | 0.045 |" in capsys.readouterr().out
    assert cli.main(["info", "--list"]) == 0
    listed = capsys.readouterr().out.split()
    # The names info tabulates: the IGC family's rows.
    assert "IGC-L100M2+Ident." in listed and "MSGC-ResNet18" not in listed


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["train", "--model", "IGC-L24M3", "--dataset", "digits"],
            "Unknown model name",
        ),
        (["train", "--dataset", "cifar10", "--data-dir", "/nowhere"], "does not exist"),
        (["evaluate", "missing.keras", "--dataset", "digits"], "No model file"),
    ],
)
def test_cli_errors_are_one_line(argv, message, capsys, tmp_path):
    assert (
        cli.main(argv + (["--output", str(tmp_path)] if argv[0] == "train" else []))
        == 2
    )
    assert message in capsys.readouterr().err


def test_cli_rejects_an_unknown_dataset(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--dataset", "mnist"])
    assert exit_.value.code == 2
    assert "invalid choice: 'mnist'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "info"])
def test_console_script_help(command):
    script = os.path.join(os.path.dirname(sys.executable), "keras-igc")
    result = subprocess.run(
        [script, command, "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: keras-igc " + command in result.stdout
    assert "--dataset" in result.stdout or "--list" in result.stdout


def test_msgc_recipes_are_the_releases_scaled_by_batch():
    from keras_igc import msgc

    resnet18 = msgc.release_recipe("MSGCResNet18")
    assert (resnet18.epochs, resnet18.batch_size, resnet18.target) == (120, 256, 0.49)
    assert msgc.release_recipe("MSGCMobileNetV2", attention=True).target == 0.628
    assert msgc.release_recipe("MSGCResNet50").epochs == 120
    assert msgc.release_recipe("MSGCMobileNetV2").epochs == 150
    recipe, release = training.msgc_recipes("MSGCResNet18", None, None, 64, None, None)
    assert release.mask_learning_rate == pytest.approx(0.075 / 4)
    assert release.backbone_learning_rate == pytest.approx(0.015 / 4)
    assert (recipe.epochs, recipe.batch_size) == (120, 64)
    _, release = training.msgc_recipes("MSGCResNet18", None, 3, None, 0.01, 0.3)
    assert (release.epochs, release.target) == (3, 0.3)
    assert release.mask_learning_rate == pytest.approx(0.05)
    with pytest.raises(ValueError, match="mac_target=1.5"):
        training.msgc_recipes("MSGCResNet18", None, None, None, None, 1.5)
    with pytest.raises(ValueError, match="model options attention"):
        training.msgc_recipes("MSGCResNet18", {"width": 3}, None, None, None, None)


def test_cli_trains_an_msgc_host_from_dense_weights(tmp_path, capsys):
    from keras_igc import applications, msgc

    dense = applications.ResNet18(input_shape=(32, 32, 3), classes=10)
    dense_path = str(tmp_path / "dense.keras")
    dense.save(dense_path)
    out = str(tmp_path / "run")
    argv = ["train", "--model", "MSGC-ResNet18", "--dataset", "cifar10",
            "--dense-weights", dense_path, "--mac-target", "0.6", "--epochs", "1",
            "--steps-per-epoch", "2", "--batch-size", "8", "--granularity", "8",
            "--output", out]  # fmt: skip
    with tfds.testing.mock_data(num_examples=16):
        assert cli.main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert '"tau": 0.6' in printed and '"mac_ratio"' in printed
    model = keras.saving.load_model(f"{out}/model.keras")
    assert isinstance(model, msgc.MSGCModel)
    assert model.get_layer("stage1_1_2_conv").heads == 4
    assert model.get_layer("stage1_1_2_conv").granularity == 8


def test_cli_msgc_options_are_refused_for_igc_networks(capsys, tmp_path):
    argv = ["train", "--dataset", "digits", "--attention", "--output", str(tmp_path)]
    assert cli.main(argv) == 2
    assert "--attention apply to the MSGC hosts" in capsys.readouterr().err

"""Every bad input a user reported gets a clear error naming the value and the
fix, and nothing answers a question about arguments by starting TensorFlow
(TensorFlow only: it runs the command line)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_igc import (
    ChannelShuffle,
    IGCConv2D,
    applications,
    cli,
    data,
    forms,
    msgc,
    training,
)

pytestmark = pytest.mark.tensorflow_only


def test_command_line_parses_without_tensorflow(tmp_path):
    # A `tensorflow` that cannot be imported: --help and typos still answer.
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('TensorFlow was imported')")
    script = os.path.join(os.path.dirname(sys.executable), "keras-igc")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([script, "--help"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "usage: keras-igc" in result.stdout
    result = subprocess.run(
        [script, "train", "--datset", "x"], capture_output=True, text=True, env=env
    )
    assert (
        result.returncode == 2 and "unrecognized arguments: --datset" in result.stderr
    )
    assert "TensorFlow was imported" not in result.stderr


def test_the_command_line_knows_every_dataset_and_normalization():
    from keras_igc import statistics

    assert set(cli.DATASET_NAMES) == set(data.DATASETS)
    assert set(cli.NORMALIZATION_NAMES) == set(statistics.NORMALIZATIONS)


def test_every_form_an_export_can_ask_for_is_described_once():
    assert set(forms.DESCRIPTIONS) == set(forms.OVERRIDES)
    for kind, described in forms.DESCRIPTIONS.items():
        assert list(described) == list(forms.OVERRIDES[kind]), kind
    assert "FORM_HELP" not in vars(cli)


@pytest.mark.parametrize(
    "kind, value, message",
    [("shuffle", "fast", "the 'shuffle' form must be one of.*Received: 'fast'"),
     ("igc_block", "sparse", "`block_form` must be one of.*block_form='sparse'"),
     ("conv3d", "grouped", "Unknown kind of layer 'conv3d'")],
)  # fmt: skip
def test_every_override_check_raises_a_message(kind, value, message):
    with pytest.raises(ValueError, match=message):
        forms.check_override(kind, value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tune", "--learning-rates", "x"], "argument --learning-rates: expected"),
        (["tune", "--learning-rates", "0.1,-1"], "argument --learning-rates"),
        (["export", "IGC-L24M2", "--output", "o", "--tolerance", "-1"],
         "argument --tolerance: expected a number >= 0"),
    ],
)  # fmt: skip
def test_bad_flags_are_named_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, message",
    [(["--max-trials", "0"], "`max_trials` must be a positive integer"),
     (["--epochs", "0"], "`epochs` must be a positive integer")],
)  # fmt: skip
def test_tune_counts_are_checked(flag, message, capsys, tmp_path):
    argv = ["tune", "--dataset", "digits", *flag, "--directory", str(tmp_path)]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("size", ["0,224", "224,-1", "224", "224,224,3"])
def test_a_preset_is_not_written_for_an_image_size_that_is_not_one(
    size, tmp_path, capsys
):
    """A zero size once wrote a preset whose preprocessor resized every image
    to zero rows. Refused before the checkpoint is read (it does not exist)."""
    preset = tmp_path / "preset"
    argv = ["convert", str(tmp_path / "missing.pth"), "--preset", str(preset),
            "--image-size", size]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--image-size" in err and "two positive integers" in err, err
    assert not preset.exists()


def test_the_python_preset_converter_refuses_a_zero_size(tmp_path):
    from keras_igc.hub import convert_to_preset

    with pytest.raises(ValueError, match=r"image_size=\(0, 224\)"):
        convert_to_preset("missing.pth", tmp_path / "p", image_size=(0, 224))


def test_numpy_integers_are_integers():
    layer = IGCConv2D(np.int64(4), np.int32(2), padding="same")
    assert layer(np.zeros((1, 4, 4, 8), "float32")).shape == (1, 4, 4, 8)
    assert type(layer.primary_partitions) is int


def test_an_absurd_igc_layer_is_refused_before_allocating():
    layer = IGCConv2D(4096, 4096)
    with pytest.raises(ValueError, match="would hold .* weights.*Check L and M"):
        layer.build((None, 8, 8, 4096 * 4096))


def test_channel_shuffle_needs_channels():
    with pytest.raises(ValueError, match="rank 2 or more"):
        ChannelShuffle(2)(np.float32(1.0))


def test_a_registered_name_keeps_its_partitions():
    with pytest.raises(ValueError, match="IGC-L24M2 fixes primary_partitions=24"):
        applications.get_model("IGC-L24M2", primary_partitions=4)


def test_convert_names_bad_rules():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    with pytest.raises(ValueError, match="`rules` is a function of a layer"):
        msgc.convert(model, {"conv2d": {"heads": 2}})


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"plain text"])
def test_broken_keras_files_are_named(tmp_path, content):
    path = tmp_path / "model.keras"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="model.keras.*(not a complete|truncated)"):
        training.evaluate(str(path), "digits")


def test_weights_files_that_do_not_fit_are_named(tmp_path):
    text = tmp_path / "notes.weights.h5"
    text.write_text("not weights")
    with pytest.raises(ValueError, match="notes.weights.h5.*not an HDF5 weights file"):
        applications.get_model("IGC-L24M2", depth=8, weights=str(text))
    other = tmp_path / "other.weights.h5"
    applications.get_model("RegConv-W16", depth=8).save_weights(str(other))
    with pytest.raises(ValueError, match="other.weights.h5.*do not fit"):
        applications.get_model("IGC-L24M2", depth=8, weights=str(other))


def test_evaluate_says_which_split_and_how_many_examples(tmp_path, capsys):
    model = applications.get_model("RegConv-W16", depth=8, input_shape=(32, 32, 1))
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    path = str(tmp_path / "m.keras")
    model.save(path)
    assert cli.main(["evaluate", path, "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    assert '"split": "digits test"' in out and '"examples": 360' in out

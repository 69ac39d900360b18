"""keras-hub presets from the authors' checkpoints: written by
`convert_to_preset` / `keras-igc convert --preset`, loaded by keras-hub's
`from_preset` in a fresh process with the releases' logits."""

import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from harness import assert_close, require_keras_hub

require_keras_hub()
pytestmark = pytest.mark.not_on_jax

import keras_hub  # noqa: E402
from test_msgc_release import FIXTURE, SIZE, images, state_dict  # noqa: E402
from test_release_weights import FIXTURES, checkpoint, mxnet_input  # noqa: E402

from keras_igc import cli  # noqa: E402
from keras_igc.hub import (  # noqa: E402
    IGCImageClassifier,
    MSGCBackbone,
    MSGCImageClassifier,
    convert_to_preset,
)

FRESH_PROCESS = inspect.cleandoc(
    """
    import json, sys
    import numpy as np
    import keras, keras_hub
    import keras_igc.hub  # registers the classes keras-hub looks up

    for preset, inputs, output in json.loads(sys.argv[1]):
        classifier = keras_hub.models.ImageClassifier.from_preset(preset)
        # The inputs are normalised already: the model, not its preprocessor.
        np.save(output, keras.ops.convert_to_numpy(classifier(np.load(inputs))))
        print(type(classifier).__name__, type(classifier.preprocessor).__name__)
    """
)


def load_in_fresh_process(jobs, tmp_path):
    """Each `(preset, inputs)` loaded by keras-hub in one new process:
    `(printed lines, [logits])`."""
    runs = []
    for i, (preset, inputs) in enumerate(jobs):
        np.save(tmp_path / f"inputs{i}.npy", inputs)
        runs.append((str(preset), str(tmp_path / f"inputs{i}.npy"),
                     str(tmp_path / f"logits{i}.npy")))  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, json.dumps(runs)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split("\n"), [np.load(out) for _, _, out in runs]


def relative_error(got, expected):
    return np.max(np.abs(got - expected)) / np.max(np.abs(expected))


def test_release_checkpoints_become_presets_with_the_releases_logits(tmp_path):
    torch = pytest.importorskip("torch")  # in the test extra; needed to write .pth
    igc_preset = tmp_path / "igc-l100m2"
    classifier = convert_to_preset(checkpoint("igc-l100m2"), igc_preset)
    assert isinstance(classifier, IGCImageClassifier)
    assert not os.path.exists(f"{igc_preset}.partial")
    # The MSGC one through the command line, as a user would.
    pth = str(tmp_path / "msgc_resnet18_att.pth")
    state = state_dict("resnet18_att")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, pth)
    msgc_preset = tmp_path / "msgc-resnet18-att"
    code = cli.main(["convert", pth, "--preset", str(msgc_preset),
                     "--image-size", f"{SIZE},{SIZE}"])  # fmt: skip
    assert code == 0

    outputs = np.load(FIXTURES / "igc-l100m2-outputs.npz")
    lines, (igc_logits, msgc_logits) = load_in_fresh_process(
        [(igc_preset, mxnet_input(outputs, 224)), (msgc_preset, images())], tmp_path
    )
    assert lines[:2] == [
        "IGCImageClassifier IGCImageClassifierPreprocessor",
        "MSGCImageClassifier MSGCImageClassifierPreprocessor",
    ]
    assert relative_error(igc_logits, outputs["logits_224"]) < 1e-4
    assert relative_error(msgc_logits, FIXTURE["resnet18_att/logits"]) < 1e-4
    with open(msgc_preset / "image_converter.json") as f:
        converter = json.load(f)["config"]
    assert converter["normalization"] == "torch"
    assert converter["image_size"] == [SIZE, SIZE]


def test_a_preset_is_never_overwritten_unasked_and_never_half_written(tmp_path):
    preset = tmp_path / "preset"
    convert_to_preset(checkpoint("resnet18-w64"), preset, image_size=(64, 64))
    before = sorted(os.listdir(preset))
    with pytest.raises(FileExistsError, match="preset' exists; pass overwrite=True"):
        convert_to_preset(checkpoint("igc-l4m32"), preset)
    assert sorted(os.listdir(preset)) == before
    assert cli.main(["convert", checkpoint("igc-l4m32"), "--preset", str(preset)]) == 2
    convert_to_preset(checkpoint("igc-l4m32"), preset, overwrite=True)
    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    assert backbone.arguments["primary_partitions"] == 4
    assert sorted(os.listdir(tmp_path)) == ["preset"]


def test_a_trained_msgc_classifier_saves_and_loads_as_a_preset(tmp_path):
    classifier = MSGCImageClassifier(
        MSGCBackbone("MSGC-MobileNetV2", attention=True, mac_weight=3.0), num_classes=4
    )
    classifier.backbone.mac_regularizer.tau.assign(0.6)
    classifier.save_to_preset(str(tmp_path))
    loaded = keras_hub.models.ImageClassifier.from_preset(str(tmp_path))
    assert isinstance(loaded, MSGCImageClassifier)
    assert loaded.backbone.get_config() == classifier.backbone.get_config()
    assert float(loaded.backbone.mac_regularizer.tau) == pytest.approx(0.6)
    x = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype("float32")
    assert_close(
        np.asarray(loaded.predict(x, verbose=0)),
        np.asarray(classifier.predict(x, verbose=0)),
        rel=1e-5,
    )


def test_a_pytorchcv_igcv3_file_becomes_a_preset_with_pytorchcvs_logits(tmp_path):
    torch = pytest.importorskip("torch")  # in the test extra; needed to write .pth
    from test_igcv3 import TORCH
    from test_igcv3 import images as igcv3_images
    from test_igcv3 import state_dict as igcv3_state

    pth = str(tmp_path / "igcv3_wd4.pth")
    torch.save({k: torch.from_numpy(v) for k, v in igcv3_state(0.25).items()}, pth)
    preset = tmp_path / "igcv3-wd4"
    argv = ["convert", pth, "--preset", str(preset), "--model", "IGCV3-0.25",
            "--image-size", "224,224"]  # fmt: skip
    assert cli.main(argv) == 0
    lines, (logits,) = load_in_fresh_process([(preset, igcv3_images())], tmp_path)
    assert lines[0] == "IGCImageClassifier IGCImageClassifierPreprocessor"
    assert relative_error(logits, TORCH["igcv3_wd4/logits"]) < 1e-4
    with open(preset / "image_converter.json") as f:
        assert json.load(f)["config"]["normalization"] == "torch"
    # A file of another width than the one asked for is refused by name.
    assert cli.main(["convert", pth, "--output", str(tmp_path / "m.keras"),
                     "--model", "IGCV3-1"]) == 2  # fmt: skip

"""The IGC authors' MXNet checkpoints in keras_igc's networks.

`fixtures/release/` holds the release's five ImageNet graphs (its symbol
files), narrowed, and its CIFAR `plain_igc` / `resnet_igc` graphs (depth 8 and
20, L = 4, M = 2, built by the release's own code), all with random weights
saved by MXNet 1.9.1's `nd.save`, and MXNet's logits (ImageNet at 224x224 and
200x200, CIFAR at 32x32). They were written by
`fixtures/generate/release_imagenet_mxnet.py` and `release_cifar_mxnet.py`;
MXNet is not needed here.
"""

import os
import pathlib
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
from harness import assert_close, write_mxnet_params

from keras_igc import applications
from keras_igc.applications.weights import mxnet
from keras_igc.applications.weights.mxnet import ReleaseWeightsError

pytestmark = pytest.mark.tensorflow_only

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "release"
NETWORKS = ["igc-l4m32", "igc-l16m16", "igc-l100m2", "resnet18-w64", "resnet18-w69"]
# ImageNet fixtures only (the CIFAR ones are loaded with their builders).


def checkpoint(name):
    return str(FIXTURES / f"{name}-0000.params")


def mxnet_input(outputs, size):
    seed = int(outputs[f"seed_{size}"])
    x = np.random.RandomState(seed).normal(0, 1, (2, 3, size, size))
    return x.astype("float32").transpose(0, 2, 3, 1)  # NCHW -> NHWC


@pytest.mark.parametrize("size", [224, 200])
@pytest.mark.parametrize("name", NETWORKS)
def test_release_graph_logits_match_mxnet(name, size):
    outputs = np.load(FIXTURES / f"{name}-outputs.npz")
    model = applications.from_release_weights(
        checkpoint(name), input_shape=(size, size, 3), classifier_activation=None
    )
    logits = keras.ops.convert_to_numpy(model(mxnet_input(outputs, size)))
    expected = outputs[f"logits_{size}"]
    error = np.max(np.abs(logits - expected)) / np.max(np.abs(expected))
    assert error < 1e-4, error


@pytest.mark.parametrize("depth", [8, 20])
@pytest.mark.parametrize("kind", ["plain", "resnet"])
def test_release_cifar_graph_logits_match_mxnet(kind, depth):
    name = f"cifar-{kind}-d{depth}"
    outputs = np.load(FIXTURES / f"{name}-outputs.npz")
    model = applications.igc_cifar_network(
        depth, kind == "resnet", 4, 2, transition="release",
        classifier_activation=None, weights=checkpoint(name),
    )  # fmt: skip
    logits = keras.ops.convert_to_numpy(model(mxnet_input(outputs, 32)))
    expected = outputs["logits_32"]
    assert np.max(np.abs(logits - expected)) / np.max(np.abs(expected)) < 1e-4


def test_a_release_residual_cifar_checkpoint_needs_the_release_transition():
    with pytest.raises(ReleaseWeightsError, match="transition='release'"):
        applications.IGCResNet20(
            primary_partitions=4, weights=checkpoint("cifar-resnet-d20")
        )


def test_the_structure_is_read_from_the_shapes():
    described = {
        name: mxnet.describe_release_weights(mxnet.read_mxnet_params(checkpoint(name)))
        for name in NETWORKS
    }
    assert described["igc-l4m32"]["primary_partitions"] == 4  # L fixed, M grows
    assert described["igc-l16m16"]["primary_partitions"] == 16
    assert described["igc-l100m2"]["secondary_partitions"] == 2  # M fixed
    assert described["igc-l100m2"]["widths"] == (10, 20, 40, 80)
    assert described["resnet18-w69"]["widths"] == (3, 6, 12, 24)
    assert {d["classes"] for d in described.values()} == {10}


@pytest.mark.parametrize("version", [0, 1, 2])
def test_every_array_format_reads_back(tmp_path, version):
    arrays = {
        "arg:a_weight": np.arange(24, dtype="float32").reshape(2, 3, 2, 2),
        "aux:a_moving_var": np.ones(5, "float32"),
    }
    write_mxnet_params(tmp_path / "x.params", arrays, version)
    read = mxnet.read_mxnet_params(str(tmp_path / "x.params"))
    assert list(read) == list(arrays)
    for name in arrays:
        np.testing.assert_array_equal(read[name], arrays[name])


def _random_release_checkpoint(model, path):
    """Random weights under the release's names for `model`, MXNet layout."""
    arrays, rng = {}, np.random.RandomState(0)
    for name, variable, layout in mxnet._targets(model, "imagenet-igc"):
        shape = tuple(variable.shape)
        if layout is None:
            array = rng.uniform(0.5, 1.5, shape)
        elif layout is np.transpose:
            array = rng.normal(0, 0.01, shape[::-1])
        else:  # (kh, kw, I/g, O) -> (O, I/g, kh, kw)
            array = rng.normal(0, 0.05, (shape[3], shape[2], shape[0], shape[1]))
        prefix = "aux:" if name.endswith(("moving_mean", "moving_var")) else "arg:"
        arrays[prefix + name] = array
    write_mxnet_params(path, arrays)
    return arrays


def test_named_builder_takes_a_full_size_release_checkpoint(tmp_path):
    path = str(tmp_path / "resnet_gcwf_noshare_imagenet_d18b100-0095.params")
    arrays = _random_release_checkpoint(applications.IGCNetL100M2(), path)
    keras.backend.clear_session()
    model = applications.IGCNetL100M2(weights=path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model.get_layer("predictions").kernel),
        arrays["arg:fc_score_weight"].T,
    )
    described = mxnet.describe_release_weights(mxnet.read_mxnet_params(path))
    assert described["paper_name"] == "IGC-L100M2+Ident."
    assert applications.from_release_weights(path).name == "igc_l100m2_ident"


def test_without_the_classifier_every_other_weight_loads():
    outputs = np.load(FIXTURES / "resnet18-w64-outputs.npz")
    full = applications.from_release_weights(checkpoint("resnet18-w64"))
    features = applications.from_release_weights(
        checkpoint("resnet18-w64"), include_top=False, pooling="avg"
    )
    x = mxnet_input(outputs, 224)
    pooled = keras.Model(full.inputs, full.get_layer("avg_pool").output)(x)
    assert_close(
        keras.ops.convert_to_numpy(features(x)),
        keras.ops.convert_to_numpy(pooled),
        rel=1e-5,
    )


def _unchanged(model, before):
    return all(
        np.array_equal(keras.ops.convert_to_numpy(w), b)
        for w, b in zip(model.weights, before, strict=True)
    )


def test_another_networks_checkpoint_names_what_does_not_fit():
    model = applications.from_release_weights(checkpoint("igc-l4m32"))
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    with pytest.raises(
        ReleaseWeightsError, match="not in the network 'g1_b1_proj_bn_beta'"
    ):
        mxnet.load_release_weights(model, checkpoint("igc-l100m2"))
    with pytest.raises(ReleaseWeightsError, match="imagenet-resnet"):
        mxnet.load_release_weights(model, checkpoint("resnet18-w64"))
    # Same names, other shapes (L16 stages are wider than L4's here).
    with pytest.raises(ReleaseWeightsError, match="parameter 'g0_conv_weight' has"):
        mxnet.load_release_weights(model, checkpoint("igc-l16m16"))
    assert _unchanged(model, before)  # nothing half-loaded


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(open(checkpoint("igc-l4m32"), "rb").read()[:5000]),
         "truncated: it ends at byte 5000 while reading array"),
        (lambda p: zipfile.ZipFile(p, "w").writestr("archive/data.pkl", b"x"),
         "zip archive \\(a PyTorch .pth"),
        (lambda p: p.write_bytes(b"\x80\x02}q\x00."), "Python pickle"),
        (lambda p: p.write_text("weights"), "NDArray-list header 0x112"),
    ],
    ids=["truncated", "pytorch-zip", "pickle", "text"],
)  # fmt: skip
def test_bad_checkpoints_get_one_clear_error(tmp_path, make, message):
    path = tmp_path / "model.params"
    make(path)
    with pytest.raises(ReleaseWeightsError, match=message):
        applications.from_release_weights(str(path))


def test_preprocess_input_modes():
    x = np.full((1, 2, 2, 3), 123.370, "float32")
    x[..., 1], x[..., 2] = 112.757, 99.406
    assert np.allclose(keras.ops.convert_to_numpy(applications.preprocess_input(x)), 0)
    torch_mode = applications.preprocess_input(np.full((1, 3), 255.0), mode="torch")
    expected = (255 - np.array([123.675, 116.28, 103.53])) / [58.395, 57.12, 57.375]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(torch_mode)[0], expected)
    with pytest.raises(ValueError, match="mode.*'caffe'"):
        applications.preprocess_input(x, mode="caffe")


def test_class_names_are_imagenets():
    names = applications.imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet tissue"


def _cli(*args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "keras_igc.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_convert_then_predict_on_the_command_line(tmp_path):
    from PIL import Image

    image = (np.random.RandomState(0).rand(300, 400, 3) * 255).astype("uint8")
    Image.fromarray(image).save(tmp_path / "photo.jpg")
    result = _cli(
        "convert", checkpoint("igc-l100m2"), "--output", "igc.keras", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "10 classes -> igc.keras" in result.stdout
    model = keras.saving.load_model(tmp_path / "igc.keras", safe_mode=True)
    assert model.output_shape == (None, 10)
    assert not any(p.name.endswith(".partial.keras") for p in tmp_path.iterdir())

    result = _cli("predict", "igc.keras", "photo.jpg", "--top", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "photo.jpg" and len(lines) == 4
    probabilities = [float(line.split("%")[0]) for line in lines[1:]]
    assert probabilities == sorted(probabilities, reverse=True)

    # The same on the release file directly, compared with the converted model.
    direct = _cli("predict", checkpoint("igc-l100m2"), "photo.jpg", cwd=tmp_path)
    assert direct.returncode == 0 and direct.stdout.splitlines()[1:4] == lines[1:]


@pytest.mark.parametrize(
    "args, message",
    [
        (["convert", "X", "--model", "IGC-L100M2+Ident.", "--output", "m.keras"],
         "holds ResNet-18 ImageNet network, stem 4.*not 'IGC-L100M2\\+Ident.'"),
        (["convert", "X", "--output", "m.h5"], "--output must end in .keras"),
        (["predict", "X", "missing.jpg"], "No image file at 'missing.jpg'"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line(tmp_path, args, message):
    import re

    args = [checkpoint("resnet18-w64") if a == "X" else a for a in args]
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert re.search(message, result.stderr), result.stderr[-2000:]
    assert "Traceback" not in result.stderr

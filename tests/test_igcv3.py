"""IGCV3 against pytorchcv's own builders and the authors' released MXNet graph.

`fixtures/igcv3_pytorchcv.npz` was written by
`fixtures/generate/igcv3_pytorchcv.py` (torch 2.13.0, pytorchcv 0.0.74):
pytorchcv's `igcv3_w1`, `igcv3_w3d4`, `igcv3_wd2` and `igcv3_wd4` on weights
drawn by `fixtures/generate/seeded_weights.py` (drawn again here), their
logits, parameter counts and MACs. `fixtures/igcv3_release_mxnet.npz` was
written by `fixtures/generate/igcv3_release_mxnet.py` (mxnet 1.9.1): the
authors' `models/igcv3-symbol.json` as released, run on the same weights under
its own names. Neither framework is needed here; the `.pth` checks need
PyTorch (the `test-backends` extra, which CI installs).
"""

import hashlib
import importlib.util
import json
import os
import zipfile

import keras
import numpy as np
import pytest
from harness import assert_round_trip, numpy, serve_folder, write_mxnet_params

from keras_igc import ChannelShuffle, GroupConv2D, applications
from keras_igc.applications import igcv3
from keras_igc.applications.weights import published, pytorchcv
from keras_igc.complexity import model_complexity

HERE = os.path.dirname(__file__)
TORCH = np.load(os.path.join(HERE, "fixtures", "igcv3_pytorchcv.npz"))
MXNET = np.load(os.path.join(HERE, "fixtures", "igcv3_release_mxnet.npz"))
SEED, SIZE, BATCH = (int(TORCH[k]) for k in ("seed", "size", "batch"))
BN_SCALE = tuple(TORCH["bn_scale"])
_spec = importlib.util.spec_from_file_location(
    "seeded_weights", os.path.join(HERE, "fixtures", "generate", "seeded_weights.py")
)
seeded_weights = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seeded_weights)

# Whole 224x224 networks: eager JAX builds each in tens of seconds (the suite's
# budget); TensorFlow and PyTorch run them, and test_applications.py builds
# IGCV3 on every backend.
pytestmark = pytest.mark.not_on_jax

MODELS = {1.0: "igcv3_w1", 0.75: "igcv3_w3d4", 0.5: "igcv3_wd2", 0.25: "igcv3_wd4"}
# The figures (pytorchcv's README and its model store; MACs counted
# on the convolutions and the classifier at 224x224).
PARAMS = {1.0: 3_491_688, 0.75: 2_638_084, 0.5: 1_985_528, 0.25: 1_534_020}


def images():
    return seeded_weights.images((BATCH, 3, SIZE, SIZE), SEED).transpose(0, 2, 3, 1)


def state_dict(alpha):
    keys = json.loads(str(TORCH[f"{MODELS[alpha]}/keys"]))
    return seeded_weights.state_dict(keys, SEED, BN_SCALE)


def logits_network(alpha, **kwargs):
    return applications.IGCV3(
        alpha, input_shape=(SIZE, SIZE, 3), classifier_activation=None, **kwargs
    )


def assert_logits_match(got, expected):
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("alpha", list(MODELS))
def test_logits_match_pytorchcv_at_every_width(alpha):
    model = logits_network(alpha)
    pytorchcv.load(model, state_dict(alpha), alpha)
    assert_logits_match(numpy(model(images())), TORCH[f"{MODELS[alpha]}/logits"])


def test_logits_match_the_authors_released_graph_in_mxnet(tmp_path):
    weights = state_dict(1.0)
    path = tmp_path / "igcv3-0000.params"
    names = json.loads(str(MXNET["names"]))
    aux = ("moving_mean", "moving_var")
    write_mxnet_params(path, {
        f"{'aux' if name.endswith(aux) else 'arg'}:{name}": weights[key]
        for name, key in names
    })  # fmt: skip
    model = logits_network(1.0, weights=str(path))
    assert_logits_match(numpy(model(images())), MXNET["logits"])
    # The released graph and pytorchcv are one network: the same logits.
    assert_logits_match(MXNET["logits"], TORCH["igcv3_w1/logits"])


@pytest.mark.tensorflow_only  # counts do not depend on the backend
@pytest.mark.parametrize("alpha", list(MODELS))
def test_parameters_and_macs_are_pytorchcvs(alpha):
    counts = model_complexity(applications.IGCV3(alpha))
    assert counts["total_params"] == PARAMS[alpha] == TORCH[f"{MODELS[alpha]}/params"]
    assert counts["macs"] == TORCH[f"{MODELS[alpha]}/macs"]
    if alpha == 1.0:
        assert round(counts["macs"] / 1e6, 2) == 312.97


def test_the_block_is_the_papers():
    """1x1 group conv (2 groups) -> BN, no activation -> shuffle (2 groups) ->
    depthwise 3x3 -> BN -> ReLU6 -> 1x1 group conv (2 groups) -> BN -> add."""
    model = applications.IGCV3(0.25, input_shape=(64, 64, 3))
    layers = [layer for layer in model.layers if layer.name.startswith("stage2_unit2_")]
    assert [type(layer).__name__ for layer in layers] == [
        "GroupConv2D", "FusedBatchNormalization", "ChannelShuffle", "DepthwiseConv2D",
        "FusedBatchNormalization", "ReLU", "GroupConv2D", "FusedBatchNormalization",
        "Add",
    ]  # fmt: skip
    assert [lyr.groups for lyr in layers if isinstance(lyr, GroupConv2D)] == [2, 2]
    assert layers[2].groups == 2 and layers[5].max_value == 6.0
    # The first unit of a stride-2 stage pads its depthwise window on every side.
    assert model.get_layer("stage2_unit1_conv2_pad").padding == ((1, 1), (1, 1))
    names = {layer.name for layer in model.layers}
    # The residual where the stride is 1 and the widths agree, only there.
    assert "stage2_unit2_add" in names and "stage2_unit1_add" not in names
    assert "stage1_unit1_add" not in names and "stage4_unit9_add" not in names
    assert not [layer for layer in model.layers if type(layer).__name__ == "Lambda"]


def test_saves_and_loads_in_safe_mode(tmp_path):
    model = applications.IGCV3(0.25, input_shape=(32, 32, 3), classes=5)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    loaded = assert_round_trip(model, x, tmp_path)
    assert sum(isinstance(layer, ChannelShuffle) for layer in loaded.layers) == 32


def test_features_without_the_classifier_load_the_same_file():
    full = logits_network(0.25)
    pytorchcv.load(full, state_dict(0.25), 0.25)
    features = applications.IGCV3(0.25, include_top=False, pooling="avg")
    pytorchcv.load(features, state_dict(0.25), 0.25)
    pooled = numpy(features(images()))
    head = full.get_layer("predictions")
    expected = pooled @ numpy(head.kernel) + numpy(head.bias)
    assert_logits_match(expected, TORCH["igcv3_wd4/logits"])


def test_a_file_of_another_width_names_the_width_it_holds():
    model = applications.IGCV3(0.5, input_shape=(32, 32, 3))
    before = [numpy(w) for w in model.weights]
    with pytest.raises(
        ValueError, match=r"alpha=0.25 \(pytorchcv's igcv3_wd4\).*IGCV3\(alpha=0.25\)"
    ):
        pytorchcv.load(model, state_dict(0.25), 0.5)
    state = state_dict(0.5)
    state["output.weight"] = state["output.weight"][:10]
    with pytest.raises(
        ValueError, match=r"output.weight: \(10, 1280\).*Nothing was loaded"
    ):
        pytorchcv.load(model, state, 0.5)
    for old, new in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(old, numpy(new))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 0}, "`alpha` must be a finite positive number.*alpha=0"),
        ({"alpha": 0.05}, "alpha >= 1/16.*alpha=0.05"),
        ({"alpha": "wide"}, "alpha='wide'"),
        ({"weights": "imagenet", "classes": 10}, "needs classes=1000.*classes=10"),
        (
            {"weights": "imagenet", "alpha": 0.3},
            r"alpha in \[0.25, 0.5, 0.75, 1.0\].*alpha=0.3",
        ),
        ({"weights": "no/such.pth"}, "'imagenet'.*weights='no/such.pth'"),
        ({"pooling": "sum", "include_top": False}, "pooling='sum'"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        applications.IGCV3(**kwargs)


@pytest.fixture
def published_wd4(tmp_path, monkeypatch):
    """pytorchcv's published file for alpha=0.25 as a user meets it: a zipped
    `.pth` under the model store's name, served over HTTP on the loopback
    address, its registry entry pointing there (`published.register`), and
    Keras' cache folder where Keras 3 puts it (`$KERAS_HOME`)."""
    torch = pytest.importorskip("torch")
    real = published.get(pytorchcv.PUBLISHED[0.25])
    served = tmp_path / "served"
    served.mkdir()
    pth = served / "weights.pth"
    torch.save({k: torch.from_numpy(v) for k, v in state_dict(0.25).items()}, pth)
    sha1 = hashlib.sha1(pth.read_bytes()).hexdigest()
    file = f"{real.name}-2871-{sha1[:8]}.pth"
    with zipfile.ZipFile(served / f"{file}.zip", "w") as bundle:
        bundle.write(pth, file)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with serve_folder(served) as address:
        entry = published.PublishedFile(real.name, f"{address}/{file}.zip", file, sha1)
        published.register(entry, replace=True)
        try:
            yield entry, served
        finally:
            published.register(real, replace=True)


def test_imagenet_weights_download_once_check_their_sha1_and_convert(
    published_wd4, tmp_path
):
    entry, served = published_wd4
    model = logits_network(0.25, weights="imagenet")
    assert_logits_match(numpy(model(images())), TORCH["igcv3_wd4/logits"])
    cached = tmp_path / "keras_home" / "models" / entry.file
    assert cached.is_file()
    assert [p.name for p in cached.parent.iterdir()] == [entry.file]  # no scratch
    # Served no more: the checked file in the cache is used.
    (served / f"{entry.file}.zip").unlink()
    again = logits_network(0.25, weights="imagenet")
    assert_logits_match(numpy(again(images())), TORCH["igcv3_wd4/logits"])


def test_a_damaged_cache_entry_is_replaced_not_used(published_wd4, tmp_path):
    entry, _ = published_wd4
    cached = tmp_path / "keras_home" / "models" / entry.file
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a file")
    model = logits_network(0.25, weights="imagenet")
    assert_logits_match(numpy(model(images())), TORCH["igcv3_wd4/logits"])
    assert published.sha1(cached) == entry.sha1


def test_a_damaged_download_is_refused_and_removed(published_wd4, tmp_path):
    entry, served = published_wd4
    # The served zip holds other bytes under the published name.
    with zipfile.ZipFile(served / f"{entry.file}.zip", "w") as bundle:
        bundle.writestr(entry.file, b"not the weights")
    with pytest.raises(
        ValueError, match=f"SHA-1 .* not the published {entry.sha1}.*Nothing was kept"
    ):
        applications.IGCV3(0.25, weights="imagenet")
    assert not list((tmp_path / "keras_home" / "models").iterdir())


def test_an_unreachable_download_names_the_url_and_what_to_do(published_wd4):
    entry, served = published_wd4
    (served / f"{entry.file}.zip").unlink()
    with pytest.raises(
        ValueError, match=f"Could not download {entry.url}.*weights=PATH"
    ):
        applications.IGCV3(0.25, weights="imagenet")


def test_a_server_that_never_answers_times_out(tmp_path):
    import socket

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        entry = published.register(published.PublishedFile(
            "silent", f"http://127.0.0.1:{port}/w.zip", "w.pth", "0" * 40
        ))  # fmt: skip
        try:
            with pytest.raises(ValueError, match="timed out.*timeout 0.5 s"):
                published.fetch(entry.name, cache_dir=tmp_path, timeout=0.5)
        finally:
            published.unregister(entry.name)


def test_a_pth_file_loads_through_weights(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "igcv3_wd4.pth"
    torch.save({k: torch.from_numpy(v) for k, v in state_dict(0.25).items()}, path)
    model = logits_network(0.25, weights=str(path))
    assert_logits_match(numpy(model(images())), TORCH["igcv3_wd4/logits"])


@pytest.mark.tensorflow_only  # tf.data
def test_info_counts_it(capsys):
    # Training IGCV3 on digits from the command line, then evaluating,
    # exporting and predicting with what it wrote: tests/test_user_path_mobile.py.
    from keras_igc import cli

    assert cli.main(["info", "IGCV3-1"]) == 0
    row = "| IGCV3-1 | 224x224 | 16 | 2.146 | 3.492 | 313.0 |"
    assert row in capsys.readouterr().out


def test_plan_follows_pytorchcv_stages_and_the_releases_rows():
    stem, units, last = igcv3.plan(1.0)
    assert (stem, len(units), last) == (32, 32, 1280)
    assert [u.name for u in units if u.strides == 2] == [
        "stage2_unit1", "stage3_unit1", "stage4_unit1", "stage5_unit1",
    ]  # fmt: skip
    assert (units[19].name, units[19].row, units[19].block) == ("stage4_unit9", 4, 0)
    assert igcv3.plan(0.25)[0] == 8 and igcv3.plan(2.0)[2] == 2560
    assert keras.config.image_data_format() == "channels_last"


@pytest.mark.tensorflow_only  # the command line starts TensorFlow
def test_convert_reads_the_authors_mxnet_checkpoint(tmp_path, capsys):
    from keras_igc import cli

    weights = state_dict(1.0)
    path = tmp_path / "igcv3-0000.params"
    write_mxnet_params(path, {
        f"arg:{name}": weights[key] for name, key in json.loads(str(MXNET["names"]))
    })  # fmt: skip
    out = tmp_path / "igcv3.keras"
    assert cli.main(["convert", str(path), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("IGCV3-1 (igcv3_w1):") and "1000 classes" in printed
    model = keras.saving.load_model(out)
    probabilities = numpy(model(images()))
    logits = MXNET["logits"]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    # Probabilities are bounded by 1: an absolute tolerance.
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)

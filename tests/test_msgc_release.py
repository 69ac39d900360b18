"""The MSGC hosts against the authors' release, run in PyTorch.

`fixtures/msgc_release.npz` was written by
`fixtures/generate/msgc_release_torch.py` (torch 2.13.0, torchvision 0.28.0,
the release's `models/`): each release host on weights drawn by
`fixtures/generate/seeded_weights.py`, which these tests draw again, so the
fixture holds only what the release computed. Nothing here needs the release,
and only the `.pth` round trip needs PyTorch.
"""

import importlib.util
import json
import os

import keras
import numpy as np
import pytest

from keras_igc import GumbelSigmoidGate, MSGCConv2D, applications, msgc
from keras_igc.applications.weights import pytorch

HERE = os.path.dirname(__file__)
FIXTURE = np.load(os.path.join(HERE, "fixtures", "msgc_release.npz"))
SEED, SIZE, BATCH = (int(FIXTURE[k]) for k in ("seed", "size", "batch"))
_spec = importlib.util.spec_from_file_location(
    "seeded_weights", os.path.join(HERE, "fixtures", "generate", "seeded_weights.py")
)
seeded_weights = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seeded_weights)

VARIANTS = {  # fixture name: (builder, attention)
    "resnet18": ("MSGCResNet18", False),
    "resnet18_att": ("MSGCResNet18", True),
    "resnet50": ("MSGCResNet50", False),
    "resnet50_att": ("MSGCResNet50", True),
    "mobilenetv2": ("MSGCMobileNetV2", False),
    "mobilenetv2_att": ("MSGCMobileNetV2", True),
}
DENSE_REFERENCE = {"MSGCResNet18": 1817.2e6, "MSGCResNet50": 4099.7e6,
                   "MSGCMobileNetV2": 306.9e6}  # fmt: skip


def images():
    nchw = seeded_weights.images((BATCH, 3, SIZE, SIZE), SEED)
    return nchw.transpose(0, 2, 3, 1)


def state_dict(prefix):
    return seeded_weights.state_dict(json.loads(str(FIXTURE[f"{prefix}/keys"])), SEED)


def host(variant, **kwargs):
    builder, attention = VARIANTS[variant]
    return applications.get_model(
        builder, input_shape=(SIZE, SIZE, 3), attention=attention,
        classifier_activation=None, **kwargs,
    )  # fmt: skip


def gates_by_generator(model, x, training=False):
    """`{release generator name: gates}` of every MSGC layer of `model`."""
    layers = [l for l in model.layers if isinstance(l, MSGCConv2D)]
    outputs = keras.Model(model.input, [l.output[1] for l in layers])(
        x, training=training
    )
    return {
        pytorch.generator_name(model, layer.name): keras.ops.convert_to_numpy(g)
        for layer, g in zip(layers, outputs, strict=True)
    }


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def loaded(request):
    model = host(request.param)
    pytorch.load_torch_weights(model, state_dict(request.param))
    return request.param, model


@pytest.mark.not_on_jax  # whole hosts: 10-17 s each to build on JAX (conftest.py)
def test_logits_masks_and_macs_equal_the_release(loaded):
    variant, model = loaded
    x = images()
    logits = keras.ops.convert_to_numpy(model(x))
    expected = FIXTURE[f"{variant}/logits"]
    np.testing.assert_allclose(logits, expected, atol=1e-4 * np.abs(expected).max())
    gates = gates_by_generator(model, x)
    names = [
        k.split("/", 2)[2] for k in FIXTURE.files if k.startswith(f"{variant}/masks/")
    ]
    assert sorted(gates) == sorted(names)
    for name in names:
        np.testing.assert_array_equal(gates[name], FIXTURE[f"{variant}/masks/{name}"])
    # MACs: per batch (the release's log) and per sample (inference_macs).
    regularizer = model.get_layer("mac_regularizer")
    ordered = [gates[pytorch.generator_name(model, l.name)]
               for l in model.layers if isinstance(l, MSGCConv2D)]  # fmt: skip
    batch = float(keras.ops.convert_to_numpy(regularizer.count_macs(ordered)))
    assert batch == pytest.approx(FIXTURE[f"{variant}/macs"][0], rel=1e-3)
    np.testing.assert_allclose(
        msgc.inference_macs(model, x), FIXTURE[f"{variant}/macs_per_sample"], rtol=1e-3
    )
    assert regularizer.dense_macs == FIXTURE[f"{variant}/flops"][0]


@pytest.mark.not_on_jax  # whole hosts at 224x224, as above
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_dense_reference_and_static_macs_at_224_equal_the_release(variant):
    builder, attention = VARIANTS[variant]
    regularizer = applications.get_model(builder, attention=attention).get_layer(
        "mac_regularizer"
    )
    dense, _, main, dgc, mask = FIXTURE[f"{variant}/flops_224"]
    assert regularizer.dense_macs == dense
    assert regularizer.dense_macs == pytest.approx(DENSE_REFERENCE[builder], abs=0.1e6)
    assert regularizer.static_macs == main + mask
    assert sum(c["macs"] for c in regularizer.convolutions) == dgc


def release_mac_loss(regularizer, gates):
    total = keras.ops.convert_to_numpy(regularizer.count_macs(gates))
    ratio = float(total) / regularizer.dense_macs
    return regularizer.weight * max(0.0, ratio - float(FIXTURE["target"]))


@pytest.mark.not_on_jax  # whole hosts, as above
def test_training_step_mac_loss_equals_the_release(loaded, monkeypatch):
    variant, model = loaded
    gate_owner = {}
    for layer in model.layers:
        if isinstance(layer, MSGCConv2D):
            gate_owner[id(layer.gate)] = pytorch.generator_name(model, layer.name)

    def release_noise(gate, shape):
        name = gate_owner[id(gate)] + ".gate"
        return seeded_weights.gate_noise(name, tuple(int(s) for s in shape), SEED)

    monkeypatch.setattr(GumbelSigmoidGate, "sample_noise", release_noise)
    regularizer = model.get_layer("mac_regularizer")
    regularizer.tau.assign(float(FIXTURE["target"]))
    regularizer.weight = float(FIXTURE["lambda"])
    expected_loss = float(FIXTURE[f"{variant}/train_mac_loss"])
    order = [pytorch.generator_name(model, l.name)
             for l in model.layers if isinstance(l, MSGCConv2D)]  # fmt: skip
    # The accounting alone, on the release's own sampled masks: exact.
    release_gates = [FIXTURE[f"{variant}/train_masks/{name}"] for name in order]
    assert release_mac_loss(regularizer, release_gates) == pytest.approx(
        expected_loss, rel=1e-6
    )
    # End to end, with the same noise: the same gates wherever logit + noise
    # is not within 1e-3 of the threshold (rounding may flip those few), up
    # to the first flip: after it, the training-mode BatchNorm statistics
    # downstream differ, and so may later gates.
    x = images()
    gates = gates_by_generator(model, x, training=True)
    flipped = 0
    for name in order:
        ours = gates[name].ravel()
        release = FIXTURE[f"{variant}/train_masks/{name}"].ravel()
        if not flipped:
            decided = np.ones(ours.size, bool)
            decided[FIXTURE[f"{variant}/train_near/{name}"]] = False
            np.testing.assert_array_equal(ours[decided], release[decided])
        flipped += int(np.sum(ours != release))
    model(x, training=True)
    (loss,) = [float(keras.ops.convert_to_numpy(v)) for v in regularizer.losses]
    tolerance = 1e-5 if not flipped else 5e-3
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    macs = float(keras.ops.convert_to_numpy(regularizer.last_macs)) * 1e6
    assert macs == pytest.approx(FIXTURE[f"{variant}/train_macs"][0], rel=tolerance)


@pytest.mark.not_on_jax  # whole hosts, as above
@pytest.mark.parametrize(
    "network, builder",
    [("resnet18", "MSGCResNet18"), ("resnet50", "MSGCResNet50"),
     ("mobilenetv2", "MSGCMobileNetV2")],
)  # fmt: skip
def test_torchvision_weights_start_the_host_as_the_torchvision_network(
    network, builder
):
    dense = state_dict(f"torchvision_{network}")
    model = applications.get_model(
        builder, input_shape=(SIZE, SIZE, 3), classifier_activation=None,
        dense_weights=dense,
    )  # fmt: skip
    msgc.open_gates(model)
    expected = FIXTURE[f"torchvision_{network}/logits"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(images())), expected,
        atol=1e-4 * np.abs(expected).max(),
    )  # fmt: skip
    if network == "resnet50":  # the dense network itself
        resnet = applications.ResNet50(
            input_shape=(SIZE, SIZE, 3), classifier_activation=None
        )
        pytorch.load_torch_weights(resnet, dense)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(resnet(images())), expected,
            atol=1e-4 * np.abs(expected).max(),
        )  # fmt: skip


@pytest.mark.not_on_jax  # whole hosts, as above
def test_release_checkpoints_load_from_pth_files_with_their_wrappers(tmp_path):
    torch = pytest.importorskip("torch")  # in the test extra; needed to write .pth
    state = state_dict("resnet18_att")
    wrapped = {
        "epoch": 120,
        "state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in state.items()},
    }
    path = str(tmp_path / "msgc_resnet18_att.pth.tar")
    torch.save(wrapped, path)
    model = host("resnet18_att", weights=path)
    expected = FIXTURE["resnet18_att/logits"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(images())), expected,
        atol=1e-4 * np.abs(expected).max(),
    )  # fmt: skip


@pytest.mark.not_on_jax  # whole hosts, as above (24 s on JAX for error paths)
def test_a_checkpoint_that_does_not_fit_loads_nothing(tmp_path):
    model = host("resnet18")
    before = [keras.ops.convert_to_numpy(v) for v in model.weights]
    with pytest.raises(ValueError, match="attention=True.*Nothing was loaded"):
        pytorch.load_torch_weights(model, state_dict("resnet18_att"))
    with pytest.raises(ValueError, match="missing.*Nothing was loaded"):
        pytorch.load_torch_weights(model, state_dict("torchvision_resnet18"))
    with pytest.raises(ValueError, match="does not have"):
        pytorch.load_torch_weights(model, state_dict("resnet50"))
    wrong_classes = host("resnet18", classes=10)
    with pytest.raises(ValueError, match="fc.weight: \\(1000, 512\\).*classes"):
        pytorch.load_torch_weights(
            wrong_classes, state_dict("torchvision_resnet18"), dense=True
        )
    for variable, value in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="notes.pth.*not a PyTorch checkpoint"):
        host("resnet18", weights=str(text))
    with pytest.raises(ValueError, match="dense_weights.*torchvision state_dict"):
        host("resnet18", dense_weights=42)


@pytest.mark.not_on_jax  # whole hosts, as above
def test_cli_converts_a_release_checkpoint(tmp_path, capsys):
    torch = pytest.importorskip("torch")  # in the test extra; needed to write .pth
    from keras_igc import cli

    state = state_dict("mobilenetv2_att")
    path = str(tmp_path / "msgc_mobilenetv2_att.pth")
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in state.items()}}, path)
    out = str(tmp_path / "m.keras")
    assert cli.main(["convert", path, "--model", "MSGC-ResNet18", "--output", out]) == 2
    assert "holds MSGCMobileNetV2, not 'MSGC-ResNet18'" in capsys.readouterr().err
    assert cli.main(["convert", path, "--output", out]) == 0
    assert "MSGCMobileNetV2 with attention" in capsys.readouterr().out
    model = keras.saving.load_model(out)
    kernel = keras.ops.convert_to_numpy(model.get_layer("block_3_project").kernel)
    np.testing.assert_array_equal(
        kernel, state["features.4.conv.2.weight"].transpose(2, 3, 1, 0)
    )

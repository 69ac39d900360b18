"""keras_igc.msgc and the MSGC hosts: conversion, MAC counts, recipe (TF only)."""

import keras
import numpy as np
import pytest
from harness import assert_close, assert_round_trip

from keras_igc import MACRegularizer, MSGCConv2D, applications, msgc
from keras_igc.complexity import model_complexity

pytestmark = pytest.mark.tensorflow_only


@pytest.mark.parametrize(
    "build, reference",
    [
        (lambda: applications.ResNet18(), 1817e6),
        (lambda: applications.ResNet50(), 4099e6),
        (lambda: keras.applications.MobileNetV2(weights=None), 307e6),
    ],
    ids=["ResNet-18", "ResNet-50", "MobileNetV2"],
)
def test_dense_hosts_match_the_reference_macs(build, reference):
    macs = model_complexity(build(), count_batch_norm=True)["macs"]
    assert macs == pytest.approx(reference, rel=0.01)


DENSE = {  # dense Keras networks with the hosts' layer names
    "MSGCResNet18": lambda **kw: applications.ResNet18(**kw),
    "MSGCResNet50": lambda **kw: applications.ResNet50(**kw),
    "MSGCMobileNetV2": lambda **kw: keras.applications.MobileNetV2(weights=None, **kw),
}
SMALL = dict(input_shape=(32, 32, 3), classes=10)


@pytest.mark.parametrize("host", applications.HOSTS)
def test_hosts_start_from_a_dense_keras_model_by_layer_name(host, tmp_path):
    dense = DENSE[host](**SMALL)
    model = applications.get_model(host, dense_weights=dense, **SMALL)
    masked = [l for l in model.layers if isinstance(l, MSGCConv2D)]
    assert masked
    for layer in model.layers:
        if layer.weights and not isinstance(layer, MACRegularizer):
            source = dense.get_layer(layer.name)
            into = layer.conv if isinstance(layer, MSGCConv2D) else layer
            for a, b in zip(into.weights, source.weights, strict=True):
                np.testing.assert_array_equal(
                    keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
                )
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    if host == "MSGCResNet50":  # same conventions: with open gates, same function
        msgc.open_gates(model)
        assert_close(model(x), dense(x), rel=1e-5)
    assert_round_trip(model, x, tmp_path, rel=1e-6)


def test_hosts_mask_where_the_release_does():
    resnet = applications.MSGCResNet50(attention=True, **SMALL)
    masked = {l.name: l for l in resnet.layers if isinstance(l, MSGCConv2D)}
    assert [masked[f"stage2_1_{k}_conv"].heads for k in (1, 2, 3)] == [1, 4, 1]
    assert [masked[f"stage2_1_{k}_conv"].attention for k in (1, 2, 3)] == [
        False,
        True,
        False,
    ]
    assert "stage2_1_proj" not in masked
    # Every generator of a block reads the block input (256 channels here).
    for k in (1, 2, 3):
        assert masked[f"stage2_1_{k}_conv"].mask_generator.reduce.kernel.shape == (
            256,
            32,
        )
    resnet18 = applications.MSGCResNet18(attention=True, **SMALL)
    assert all(
        l.attention for l in resnet18.layers if isinstance(l, MSGCConv2D)
    )  # att1 and att2
    mobilenet = applications.MSGCMobileNetV2(**SMALL)
    project = mobilenet.get_layer("block_1_project")
    assert isinstance(project, MSGCConv2D) and not project.attention
    assert project.mask_generator.reduce.kernel.shape == (16, 4)  # block input
    assert not isinstance(mobilenet.get_layer("block_1_expand"), MSGCConv2D)


def test_keras_caffe_resnet50_is_refused_as_dense_weights():
    # keras.applications.ResNet50 is v1 with biases: not the release's start.
    dense = keras.applications.ResNet50(weights=None, **SMALL)
    with pytest.raises(ValueError, match="no layers named"):
        applications.MSGCResNet50(dense_weights=dense, **SMALL)


def test_mac_target_scheduler_moves_tau_and_fit_reports_macs():
    inputs = keras.Input((8, 8, 4))
    y, gates = MSGCConv2D(8, 3, heads=2)(inputs)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(3, activation="softmax")(y)
    outputs = MACRegularizer(
        dense_macs=50000, convolutions=[{"macs": 18432, "heads": 2}]
    )([y, gates])
    with pytest.warns(UserWarning, match="msgc.MSGCModel"):
        msgc.compile_for_msgc(keras.Model(inputs, outputs), 2, 2)
    model = msgc.MSGCModel(inputs, outputs)
    msgc.compile_for_msgc(model, steps_per_epoch=2, epochs=2)
    x = np.random.default_rng(1).normal(size=(8, 8, 8, 4)).astype("float32")
    labels = np.arange(8) % 3
    history = model.fit(
        x, labels, batch_size=4, epochs=2, verbose=0,
        callbacks=[msgc.MACTargetScheduler(target=0.5, fraction=0.5)],
    )  # fmt: skip
    assert history.history["tau"] == [0.75, 0.5]
    assert {"macs", "mac_ratio"} <= set(history.history)


def test_parameter_groups_follow_the_release():
    model = applications.MSGCResNet18(
        input_shape=(32, 32, 3), classes=10, attention=True
    )
    msgc.compile_for_msgc(model, 10, 1, mask_learning_rate=0.1,
                          backbone_learning_rate=0.02, weight_decay=1e-4)  # fmt: skip
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    mask = msgc.mask_variables(model)[0]
    backbone = model.get_layer("stem_conv").kernel
    attention = [v for v in model.trainable_variables if "attention" in v.path]
    norms = [v for v in model.trainable_variables if v.path.endswith("/gamma")]
    assert attention and norms and "mask_generator" in mask.path
    # Mask generators: 5x the rate, no decay; BatchNorm: no decay; the rest,
    # attention generators included, decay at the backbone rate.
    assert optimizer.learning_rate_multiplier_of(mask) == pytest.approx(5.0)
    assert optimizer.decay_of(mask) == 0.0
    assert {optimizer.decay_of(v) for v in norms} == {0.0}
    assert {optimizer.decay_of(v) for v in attention if "norm" not in v.path} == {1e-4}
    assert {optimizer.learning_rate_multiplier_of(v) for v in attention} == {1.0}
    assert optimizer.decay_of(backbone) == 1e-4
    before = [np.array(mask), np.array(backbone)]
    # A gradient that cancels the backbone's decay: both take a unit step.
    grads = [
        keras.ops.ones(mask.shape),
        1.0 - 1e-4 * keras.ops.convert_to_tensor(backbone),
    ]
    optimizer.apply(grads, [mask, backbone])
    steps = [np.array(v) - b for v, b in zip([mask, backbone], before, strict=True)]
    assert np.allclose(steps[1] / steps[0].mean(), 0.2, rtol=1e-5)


def test_bad_targets_hosts_and_heads_are_errors():
    for target in (0, 1.5):
        with pytest.raises(ValueError, match="target.*\\(0, 1\\]"):
            msgc.MACTargetScheduler(target=target)
    with pytest.raises(ValueError, match="Unknown model name 'MSGCVGG16'"):
        applications.get_model("MSGCVGG16")
    with pytest.raises(ValueError, match="heads=5.*divisors of 64"):
        applications.MSGCResNet18(heads=5, **SMALL)
    with pytest.raises(ValueError, match="weights.*'imagenet'"):
        applications.MSGCResNet50(weights="imagenet", **SMALL)


def test_convert_rejects_what_it_cannot_rewrite():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="Functional"):
        msgc.convert(model, lambda layer: {"heads": 2})
    functional = keras.Model(model.inputs, model.outputs)
    with pytest.raises(ValueError, match="no convolution"):
        msgc.convert(functional, lambda layer: None)


def test_topology_plot(tmp_path):
    model = applications.MSGCResNet18(input_shape=(32, 32, 3), classes=10)
    x = np.random.default_rng(2).normal(size=(3, 32, 32, 3)).astype("float32")
    masks = msgc.head_masks(model, x)
    assert masks["stage1_1_2_conv"].shape == (3, 4, 64)
    path = msgc.plot_topology(masks, str(tmp_path / "topology.png"))
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_mobilenet_host_refuses_channels_first_with_the_other_builders_message():
    keras.config.set_image_data_format("channels_first")
    try:
        with pytest.raises(ValueError, match="built channels_last"):
            applications.MSGCMobileNetV2(input_shape=(3, 32, 32), classes=10)
    finally:
        keras.config.set_image_data_format("channels_last")


def test_the_classifier_of_a_host_is_reached_by_name():
    model = applications.MSGCResNet18(input_shape=(32, 32, 3), classes=10)
    assert isinstance(model.layers[-1], MACRegularizer)
    assert model.get_layer("predictions").units == 10


@pytest.mark.parametrize("pooling, rank", [(None, 4), ("avg", 2), ("max", 2)])
@pytest.mark.parametrize("host", applications.HOSTS)
def test_hosts_without_top_take_any_input_size(host, pooling, rank):
    model = applications.get_model(host, include_top=False, pooling=pooling)
    assert model.input_shape == (None, None, None, 3)
    outputs = model(np.zeros((1, 64, 64, 3), "float32"))
    assert len(outputs.shape) == rank
    if rank == 4:
        assert outputs.shape[1:3] == (2, 2)
    # MACs are counted per 224x224 image, as for a host built on that size.
    fixed = applications.get_model(
        host, include_top=False, pooling=pooling, input_shape=(224, 224, 3)
    )
    regularizers = [m.get_layer("mac_regularizer") for m in (model, fixed)]
    assert regularizers[0].dense_macs == regularizers[1].dense_macs
    assert regularizers[0].static_macs == regularizers[1].static_macs
    model(np.zeros((1, 96, 96, 3), "float32"))  # any size runs
    assert float(regularizers[0].last_macs) > 0


@pytest.mark.parametrize("host", applications.HOSTS)
def test_hosts_classify_with_any_classes_and_give_logits_on_request(host):
    model = applications.get_model(
        host, input_shape=(32, 32, 3), classes=7, classifier_activation=None
    )
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    logits = keras.ops.convert_to_numpy(model(x))
    assert logits.shape == (2, 7) and not np.allclose(logits.sum(axis=1), 1)

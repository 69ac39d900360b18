import functools
import re

import keras
import numpy as np
import pytest
from harness import assert_round_trip

import keras_igc
from keras_igc import applications
from keras_igc.applications.conv_families import IGCConvs, RegularConvs, SumFusionConvs
from keras_igc.complexity import model_complexity

pytestmark = pytest.mark.tensorflow_only

# The reference tables (section 1 of ../shared/reference/papers.md), in millions.
# "conv" counts convolution weights only; "total" adds BatchNorm scale/offset
# and the classifier (10 classes); MACs are for one 32x32 (CIFAR) or 224x224
# (ImageNet) image.
PLAIN_ROWS = [
    # name, depth, conv, total, MACs
    ("RegConv-W16", 8, 0.074, 0.075, 12.2),
    ("RegConv-W16", 20, 0.268, 0.270, 40.6),
    ("RegConv-W16", 38, 0.558, 0.561, 83.0),
    ("RegConv-W18", 8, 0.094, None, 15.4),
    ("RegConv-W18", 20, 0.339, None, 51.3),
    ("RegConv-W18", 38, 0.706, None, 105.0),
    ("IGC-L4M8", 8, 0.076, 0.079, 13.1),
    ("IGC-L4M8", 20, 0.274, 0.278, 42.4),
    ("IGC-L4M8", 38, 0.569, 0.576, 86.2),
    ("IGC-L24M2", 8, 0.045, 0.048, 9.9),
    ("IGC-L24M2", 20, 0.150, 0.156, 28.8),
    ("IGC-L24M2", 38, 0.307, 0.317, 57.1),
]
RESIDUAL_ROWS = [
    # name, depth, conv, MACs
    ("RegConv-W16+Ident.", 20, 0.270, 40.8),
    ("RegConv-W16+Ident.", 38, 0.561, 83.3),
    ("IGC-L4M8+Ident.", 20, 0.277, 42.7),
    ("IGC-L4M8+Ident.", 38, 0.573, 86.6),
    ("IGC-L24M2+Ident.", 20, 0.158, 29.7),
    ("IGC-L24M2+Ident.", 38, 0.315, 58.1),
    ("IGC-L16M32+Ident.", 20, 17.68, 2690),
    ("IGC-L32M26+Ident.", 20, 24.10, 3740),
]
IMAGENET_MACS = [
    ("ResNet-18-C64", 1810),
    ("ResNet-18-C69", 2100),
    ("IGC-L4M32+Ident.", 1950),
    ("IGC-L16M16+Ident.", 2270),
    ("IGC-L100M2+Ident.", 1270),
]


def close(ours, table):
    """Within 0.5 %, or within the rounding of the printed figure."""
    text = f"{table}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(ours - table) <= max(0.005 * table, 0.5 * 10**-decimals)


def counts(name, **kwargs):
    model = applications.get_model(name, **kwargs)
    result = {k: v / 1e6 for k, v in model_complexity(model).items()}
    keras.backend.clear_session()
    return result


@pytest.mark.parametrize("name, depth, conv, total, macs", PLAIN_ROWS)
def test_plain_network_counts_match_the_reference(name, depth, conv, total, macs):
    ours = counts(name, depth=depth)
    assert close(ours["conv_params"], conv), ours
    assert close(ours["macs"], macs), ours
    if total is not None:
        assert close(ours["total_params"], total), ours


@pytest.mark.parametrize("name, depth, conv, macs", RESIDUAL_ROWS)
def test_residual_network_counts_match_the_reference(name, depth, conv, macs):
    # The table counts the release's networks: for IGC, transition="release".
    release = {"transition": "release"} if name.startswith("IGC") else {}
    ours = counts(name, depth=depth, **release)
    assert close(ours["conv_params"], conv), ours
    assert close(ours["macs"], macs), ours


def test_the_release_transition_is_what_separates_igc_l24m2_from_its_row():
    paper = counts("IGC-L24M2+Ident.", depth=20)
    release = counts("IGC-L24M2+Ident.", depth=20, transition="release")
    assert not close(paper["conv_params"], 0.158)  # 0.151 by the paper's definition
    assert abs(release["conv_params"] - 0.158) < 5e-4  # the table prints 3 decimals
    # The release's secondary keeps the old M: G * L more weights per widening
    # unit (G the new width), in stages 2 and 3.
    extra = sum(24 * 2 * 2**stage * 24 for stage in (1, 2))
    assert round((release["conv_params"] - paper["conv_params"]) * 1e6) == extra


def test_transition_must_be_paper_or_release():
    with pytest.raises(ValueError, match="transition.*'paper', 'release'.*'x'"):
        applications.IGCResNet20(transition="x")


@pytest.mark.parametrize("name, macs", IMAGENET_MACS)
def test_imagenet_macs_match_the_reference(name, macs):
    assert close(counts(name)["macs"], macs)


def test_sum_fusion_default_is_at_the_regconv_w16_budget():
    fusion = counts("SumFusion-L8W32", depth=20)["conv_params"]
    assert abs(fusion / counts("RegConv-W16", depth=20)["conv_params"] - 1) < 0.02


def small_input(name):
    return (32, 32, 3) if applications.dataset_of(name) == "cifar" else (64, 64, 3)


def build(name, **kwargs):
    if applications.lookup(name).takes("depth"):
        kwargs.setdefault("depth", 8)
        wide = re.fullmatch(r"IGC-L(?:32|16)M(\d+)(\+Ident\.)?", name)
        if wide:  # the same structure at a width the CPU tests can afford
            return applications.cifar.igc_cifar_network(
                primary_partitions=4, secondary_partitions=int(wide.group(1)),
                residual=bool(wide.group(2)), **kwargs,
            )  # fmt: skip
    if name == "igc_imagenet_network":
        kwargs.update(stem_width=16, stage_widths=(16, 32, 64, 128))
        kwargs.setdefault("primary_partitions", 4)
    return applications.get_model(name, **kwargs)


@pytest.mark.parametrize(
    "builder, arguments",
    [
        ("IGCNetL4M32", {"primary_partitions": 4}),
        ("IGCNetL100M2", {"secondary_partitions": 2}),
    ],
)
def test_the_generic_imagenet_builder_builds_the_papers_networks(builder, arguments):
    paper = applications.get_model(builder)
    stem = paper.get_layer("stem_conv").filters
    widths = [paper.get_layer(f"stage{s}_2_out").output.shape[-1] for s in range(1, 5)]
    generic = applications.igc_imagenet_network(stem, widths, **arguments)
    assert [(l.name, [w.shape for w in l.weights]) for l in generic.layers[1:]] == [
        (l.name, [w.shape for w in l.weights]) for l in paper.layers[1:]
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"primary_partitions": 4, "secondary_partitions": 2}, "one of.*Received: pri"),
        ({"stage_widths": (8, 16)}, "four stage widths.*stage_widths=\\(8, 16\\)"),
        ({"stem_width": 0}, "`stem_width` must be a positive integer.*stem_width=0"),
        ({"primary_partitions": 5}, "width 16 does not split into primary_parti"),
    ],
)
def test_the_generic_imagenet_builder_names_a_bad_argument(kwargs, message):
    arguments = {"stem_width": 16, "stage_widths": (16, 32, 64, 128), **kwargs}
    with pytest.raises(ValueError, match=message):
        applications.igc_imagenet_network(**arguments)


@pytest.mark.parametrize("name", applications.list_models(builders=True))
def test_every_builder_classifies(name):
    """Every registered name, paper rows and builders alike (timm's one test
    over `list_models()`)."""
    model = build(name, classes=7, input_shape=small_input(name))
    x = np.random.default_rng(0).uniform(0, 1, size=(2,) + small_input(name))
    probabilities = keras.ops.convert_to_numpy(model(x.astype("float32")))
    assert probabilities.shape == (2, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("name", ["IGC-L24M2", "IGC-L4M8+Ident.", "IGC-L100M2+Ident."])
@pytest.mark.parametrize("pooling, rank", [(None, 4), ("avg", 2), ("max", 2)])
def test_without_top(name, pooling, rank):
    model = build(name, include_top=False, pooling=pooling)
    assert model.input_shape == (None, None, None, 3)
    shape = small_input(name)
    out = model(np.zeros((1,) + shape, "float32"))
    assert len(out.shape) == rank
    if rank == 4:
        assert out.shape[1] == shape[0] // (4 if shape[0] == 32 else 32)


def test_custom_input_tensor_and_one_channel_input():
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    model = applications.IGCNet8(input_tensor=x, classes=3)
    assert model.inputs[0] is inputs
    assert model(np.zeros((2, 32, 32, 1), "float32")).shape == (2, 3)


def test_logits_without_classifier_activation():
    model = applications.IGCNet8(classifier_activation=None)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    assert not np.allclose(keras.ops.convert_to_numpy(model(x)).sum(axis=1), 1)


def test_keras_file_round_trip_and_weights_file(tmp_path):
    model = applications.IGCResNet20(classes=4)
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    assert_round_trip(model, x, tmp_path)
    model.save_weights(tmp_path / "m.weights.h5")
    again = applications.IGCResNet20(classes=4, weights=str(tmp_path / "m.weights.h5"))
    for loaded, saved in zip(again.weights, model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(loaded), np.asarray(saved))
    # The same call on both: a model's second eager call runs traced
    # (TracedModel), whose fused kernels round differently from the first's.
    np.testing.assert_array_equal(again.predict_on_batch(x), model.predict_on_batch(x))


def consumers(layer):
    return [node.operation for node in layer._outbound_nodes]


@pytest.mark.parametrize("builder", [applications.IGCNet8, applications.IGCResNet20])
def test_block_order_is_the_papers(builder):
    """IGC (nothing between primary and secondary) -> BN -> ReLU; in residual
    blocks the second BN feeds the addition, and ReLU follows it."""
    model = builder()
    igc_layers = [lyr for lyr in model.layers if isinstance(lyr, keras_igc.IGCConv2D)]
    assert igc_layers
    for layer in igc_layers:
        assert not hasattr(layer, "activation")
        kinds = [
            "Conv2D" if isinstance(s, keras.layers.Conv2D) else type(s).__name__
            for s in layer._layers
        ]
        assert kinds == ["Conv2D", "ChannelShuffle", "Conv2D", "ChannelShuffle"]
        (bn,) = consumers(layer)
        assert isinstance(bn, keras.layers.BatchNormalization)
        (after_bn,) = consumers(bn)
        if isinstance(after_bn, keras.layers.Add):
            (after_bn,) = consumers(after_bn)
        assert isinstance(after_bn, keras.layers.ReLU)
    adds = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Add)]
    assert bool(adds) == (builder is applications.IGCResNet20)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: applications.igc_cifar_network(21), "3k\\+2.*depth=21"),
        (lambda: applications.igc_cifar_network(18, residual=True), "6k\\+2.*depth=18"),
        (lambda: applications.get_model("IGC-L24M3"), "Unknown model name 'IGC-L24M3'"),
        (lambda: applications.IGCNet20(weights="imagenet"), "weights='imagenet'"),
        (lambda: applications.IGCNet20(pooling="mean"), "pooling='mean'"),
        (lambda: applications.IGCNet20(classes=0), "classes=0"),
        (lambda: applications.IGCNet20(primary_partitions=0), "primary_partitions=0"),
        (
            lambda: applications.IGCNet20(input_shape=(4, 4, 3)),
            "at least 8x8",
        ),
        (
            lambda: applications.IGCNetL100M2(input_shape=(16, 16, 3)),
            "at least 32x32",
        ),
        (lambda: applications.get_model("ResNet-18-C64", depth=20), "depth=20"),
    ],
)
def test_bad_arguments(call, error):
    with pytest.raises(ValueError, match=error):
        call()


def test_missing_weights_file_is_named(tmp_path):
    missing = str(tmp_path / "nope.weights.h5")
    with pytest.raises(ValueError, match="nope.weights.h5"):
        applications.IGCNet8(weights=missing)


def test_stage_width_must_split_into_partitions():
    with pytest.raises(ValueError, match="width 100 does not split into primary"):
        IGCConvs(primary_partitions=24).partitions(100)


def test_model_names_are_case_insensitive_and_suggest():
    assert applications.get_model("igc-l24m2", depth=8).name == "igc_l24m2_d8"
    with pytest.raises(ValueError, match="Did you mean 'IGC-L24M2'"):
        applications.get_model("IGC-L24-M2")


def test_preprocess_inputs():
    pixels = np.full((1, 2, 2, 3), 255.0, "float32")
    cifar = keras.ops.convert_to_numpy(applications.preprocess_cifar_input(pixels))
    np.testing.assert_allclose(
        cifar[0, 0, 0],
        (1 - np.array([0.4914, 0.4822, 0.4465])) / [0.2470, 0.2435, 0.2616],
    )
    # The release's statistics by default (its checkpoints and data pipeline).
    imagenet = keras.ops.convert_to_numpy(
        applications.preprocess_imagenet_input(pixels)
    )
    np.testing.assert_allclose(
        imagenet[0, 0, 0],
        (255 - np.array([123.370, 112.757, 99.406])) / [68.998, 66.093, 68.292],
        rtol=1e-5,
    )
    torch_mode = keras.ops.convert_to_numpy(
        applications.preprocess_imagenet_input(pixels, mode="torch")
    )
    np.testing.assert_allclose(
        torch_mode[0, 0, 0],
        (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="1 channels"):
        applications.preprocess_cifar_input(np.zeros((1, 2, 2, 1)))


def test_summary_table_lists_widths_params_and_macs():
    table = applications.summary_table(["IGC-L24M2", "RegConv-W16+Ident."], depth=20)
    lines = table.splitlines()
    assert len(lines) == 4
    assert "| IGC-L24M2 D=20 | 32x32 | 48 | 0.150 | 0.156 | 28.8 |" in lines[2]
    assert lines[3].startswith("| RegConv-W16+Ident. D=20 | 32x32 | 16 | 0.270 |")


def test_list_models_covers_the_papers_rows():
    names = set(applications.list_models())
    for row in [
        "IGC-L4M8",
        "IGC-L24M2",
        "IGC-L32M26+Ident.",
        "IGC-L16M32+Ident.",
        "RegConv-W16",
        "RegConv-W18",
        "IGC-L100M2+Ident.",
        "ResNet-18-C69",
    ]:
        assert row in names
    assert set(applications.list_models("imagenet")) < names
    assert "MSGC-ResNet18" in names and "IGCNet38" not in names
    assert set(applications.list_models(family="msgc")) == {
        "MSGC-ResNet18", "MSGC-MobileNetV2", "MSGC-ResNet50"
    }  # fmt: skip


def test_one_registry_holds_every_builder():
    """Every public builder of keras_igc.applications is reachable by name,
    and a builder name builds what the builder builds."""
    builders = [
        name for name in applications.__all__
        if name[0].isupper() and callable(getattr(applications, name))
    ]  # fmt: skip
    assert len(builders) == 14
    registered = set(applications.list_models(builders=True))
    assert set(builders) <= registered
    for name in builders:
        assert applications.lookup(name).builder is getattr(applications, name)
    by_name = applications.get_model("IGCNet8", classes=3)
    direct = applications.IGCNet8(classes=3)
    assert by_name.name == direct.name
    assert [w.shape for w in by_name.weights] == [w.shape for w in direct.weights]
    assert [type(layer) for layer in by_name.layers] == [
        type(layer) for layer in direct.layers
    ]
    assert applications.get_model("msgc-resnet18").name == "msgc_resnet18"
    assert applications.msgc_host("MSGC-ResNet50") == "MSGCResNet50"
    assert applications.msgc_host("ResNet50") is None
    assert applications.msgc_host("IGC-L24M2") is None
    with pytest.raises(ValueError, match="IGCNet38 is a fixed network.*depth=20"):
        applications.get_model("IGCNet38", depth=20)
    with pytest.raises(ValueError, match="MSGC-ResNet18 is of the MSGC family"):
        applications.summary_table(["MSGC-ResNet18"])


@pytest.mark.parametrize(
    "convs, width, builder, residual",
    [
        (RegularConvs(), 16, applications.regconv_cifar_network, False),
        (RegularConvs(), 16, applications.regconv_cifar_network, True),
        (SumFusionConvs(8), 32, applications.sum_fusion_cifar_network, False),
        (SumFusionConvs(8), 32, applications.sum_fusion_cifar_network, True),
        (  # the release's widening unit exists in residual networks only
            IGCConvs(4, transition="release"),
            32,
            functools.partial(
                applications.igc_cifar_network,
                primary_partitions=4,
                secondary_partitions=8,
                transition="release",
            ),
            True,
        ),  # fmt: skip
    ],
)
def test_every_family_counts_its_weights_without_building(
    convs, width, builder, residual
):
    counted = applications.cifar.conv_weights(convs, width, 8, residual)
    built = model_complexity(builder(8, residual=residual))["conv_params"]
    assert counted == built

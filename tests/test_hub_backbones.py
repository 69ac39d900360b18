"""keras_igc.hub's backbones: every network of the applications as a keras-hub
`FeaturePyramidBackbone`, with the application's layers and weights."""

import inspect
import subprocess
import sys

import keras
import numpy as np
import pytest
from harness import assert_close, assert_round_trip, numpy, require_keras_hub

require_keras_hub()

from keras_hub.models import FeaturePyramidBackbone  # noqa: E402

from keras_igc import applications  # noqa: E402
from keras_igc.applications import registry  # noqa: E402
from keras_igc.hub import IGCBackbone, MSGCBackbone  # noqa: E402

# Small arguments for the builders that need some (the rest take their own).
SMALL = {
    "igc_cifar_network": {"depth": 8},
    "regconv_cifar_network": {"depth": 8},
    "sum_fusion_cifar_network": {"depth": 8},
    "igc_imagenet_network": {
        "stem_width": 16, "stage_widths": [16, 32, 64, 128], "secondary_partitions": 2,
    },
}  # fmt: skip
BUILDERS = [
    name
    for name in applications.list_models(builders=True)
    if registry.lookup(name).builder.__name__ == name and name != "ResNet50"
]


def backbone_class(name):
    return MSGCBackbone if registry.msgc_host(name) else IGCBackbone


def size_of(name):
    return 32 if registry.dataset_of(name) == "cifar" else 64


def test_every_builder_but_the_dense_resnet50_has_a_backbone():
    # ResNet-50 without masks is keras-hub's own ResNetBackbone.
    assert len(BUILDERS) == 17
    with pytest.raises(ValueError, match="dense network.*ResNetBackbone"):
        IGCBackbone("ResNet50")


@pytest.mark.tensorflow_only  # the networks alone take minutes in eager JAX
@pytest.mark.parametrize("name", BUILDERS)
def test_backbone_is_the_application_without_its_head(name):
    size, arguments = size_of(name), SMALL.get(name, {})
    application = registry.get_model(
        name, include_top=False, input_shape=(size, size, 3), **arguments
    )
    backbone = backbone_class(name)(name, **arguments)
    assert isinstance(backbone, FeaturePyramidBackbone)
    assert [(l.name, [w.shape for w in l.weights]) for l in backbone.layers[1:]] == [
        (l.name, [w.shape for w in l.weights]) for l in application.layers[1:]
    ]
    for layer in backbone.layers[1:]:
        layer.set_weights(application.get_layer(layer.name).get_weights())
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32")
    assert_close(numpy(backbone(x)), numpy(application(x)), rel=1e-5)

    # Level n is 1/2^n of the input; the top level is the network's output.
    pyramid = keras.Model(backbone.inputs, backbone.pyramid_outputs)(x)
    levels = sorted(pyramid, key=lambda level: int(level[1:]))
    first = 0 if registry.dataset_of(name) == "cifar" else 2
    assert levels == [f"P{n}" for n in range(first, first + len(levels))]
    for level, features in pyramid.items():
        assert features.shape[1:3] == (size >> int(level[1:]),) * 2, level
    np.testing.assert_array_equal(numpy(pyramid[levels[-1]]), numpy(backbone(x)))


@pytest.mark.parametrize(
    "backbone_class, name, arguments",
    [
        (IGCBackbone, "igc_cifar_network", {"depth": 8, "residual": True}),
        # test_msgc_layers.py round-trips the MSGC layers on JAX.
        pytest.param(
            MSGCBackbone, "MSGC-MobileNetV2", {"attention": True, "alpha": 0.5},
            marks=pytest.mark.not_on_jax,
        ),
    ],
)  # fmt: skip
def test_backbone_saves_and_loads_as_a_keras_file(
    backbone_class, name, arguments, tmp_path
):
    backbone = backbone_class(name, **arguments)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    loaded = assert_round_trip(backbone, x, tmp_path, rel=1e-6)
    assert loaded.get_config() == backbone.get_config()
    assert sorted(loaded.pyramid_outputs) == sorted(backbone.pyramid_outputs)


def test_config_is_plain_values_that_rebuild_the_backbone():
    backbone = IGCBackbone("IGC-L24M2+Ident.", depth=8, image_shape=(32, 32, 3))
    config = backbone.get_config()
    assert config["architecture"] == "IGC-L24M2+Ident." and config["depth"] == 8
    rebuilt = IGCBackbone.from_config(config)
    assert rebuilt.name == backbone.name == "igc_l24m2_d8_ident"
    assert rebuilt.count_params() == backbone.count_params()
    assert tuple(rebuilt.input.shape) == (None, 32, 32, 3)


@pytest.mark.not_on_jax
def test_msgc_backbone_adds_the_mac_loss_through_its_pyramid():
    backbone = MSGCBackbone("MSGC-ResNet18", attention=True, mac_weight=5.0)
    regularizer = backbone.mac_regularizer
    assert regularizer.weight == 5.0 and regularizer.dense_macs > 0
    # A model on the pyramid alone (a detector's feature extractor) keeps it.
    pyramid = keras.Model(backbone.inputs, backbone.pyramid_outputs)
    regularizer.tau.assign(0.0)
    pyramid(np.zeros((1, 64, 64, 3)), training=True)
    assert len(pyramid.losses) == 1 and float(numpy(pyramid.losses[0])) > 0


def test_layers_take_the_dtype_policy():
    backbone = IGCBackbone("IGCNet8", dtype="bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # put back
    assert {l.dtype_policy.name for l in backbone.layers[1:]} == {"bfloat16"}
    features = backbone(np.zeros((1, 32, 32, 3)))
    assert keras.backend.standardize_dtype(features.dtype) == "bfloat16"
    assert IGCBackbone.from_config(backbone.get_config()).layers[1].compute_dtype == (
        "bfloat16"
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: IGCBackbone("IGC-L100M3"), "Unknown model name 'IGC-L100M3'"),
        (lambda: IGCBackbone("MSGC-ResNet18"), "an MSGC host: use .*MSGCBackbone"),
        (lambda: MSGCBackbone("IGCNet38"), "MSGCBackbone builds MSGCResNet18.*IGCBack"),
        (
            lambda: IGCBackbone("IGCNet38", classes=3),
            "takes no argument 'classes'.*primary_partitions",
        ),
        (lambda: MSGCBackbone("MSGC-ResNet18", alpha=0.5), "no argument 'alpha'"),
        (
            lambda: MSGCBackbone("MSGC-ResNet18", dense_weights="r18.pth"),
            "no argument 'dense_weights'.*convert_to_preset",
        ),
        (
            lambda: IGCBackbone("igc_cifar_network", depth=8, residual=object()),
            "plain values.*residual=<object",
        ),
        (
            lambda: IGCBackbone("IGCNet8", image_shape=(32, 32)),
            r"\(height, width, channels\).*image_shape=\(32, 32\)",
        ),
        (
            lambda: IGCBackbone("igc_imagenet_network", stem_width=8, stage_widths=[8]),
            "four stage widths.*stage_widths=\\[8\\]",
        ),
    ],
)
def test_bad_arguments_name_the_value_and_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.tensorflow_only  # import-time logic, the same on every backend
def test_keras_igc_imports_without_keras_hub_and_hub_says_how_to_get_it():
    code = inspect.cleandoc(
        """
        import importlib.abc, sys

        class NoKerasHub(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "keras_hub":
                    raise ImportError("no keras_hub here")

        sys.meta_path.insert(0, NoKerasHub())
        import importlib.metadata
        real = importlib.metadata.version
        def version(name):
            if name == "keras-hub":
                raise importlib.metadata.PackageNotFoundError(name)
            return real(name)
        importlib.metadata.version = version

        import keras_igc
        keras_igc.applications.IGCNet8()
        try:
            import keras_igc.hub
        except ImportError as error:
            print(error)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'pip install "keras-igc[hub]"' in result.stdout

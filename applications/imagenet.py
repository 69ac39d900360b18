"""The IGC paper's ImageNet networks (the ResNet-18 baselines are in resnet.py).

Skeleton (Zhang et al., ICCV 2017, arXiv:1707.02725, as its authors' MXNet
release builds it): 7x7 stride-2 stem, BatchNorm,
ReLU, 3x3 stride-2 max-pooling; four stages of two residual blocks (two
convolution units each), stride 2 in the first block of stages 2-4;
projection shortcuts (a 1x1 group convolution with L groups for IGC, a dense
1x1 for ResNet) with BatchNorm; global average pooling and a 1000-way
classifier.
"""

import os

import keras

from keras_igc import statistics
from keras_igc.applications import conventions
from keras_igc.applications.blocks import residual_block
from keras_igc.applications.conv_families import IGCConvs, RegularConvs
from keras_igc.applications.registry import register
from keras_igc.applications.weights import Sources, mxnet
from keras_igc.validation import positive_int

MOMENTUM = 0.9


# The weights these networks take besides Keras files: the IGC authors'
# MXNet checkpoints (`weights="...-0095.params"`).
WEIGHTS = Sources("the IGC ImageNet networks", (mxnet.FORMAT,))


def imagenet_network(convs, stem_width, stage_widths, **application_args):
    """The IGC paper's ImageNet skeleton with `convs` (a `conv_families`
    family); `application_args` are the keras.applications ones."""

    def features(image):
        x, padding = conventions.release_padding(image, 7, 2, "stem_conv")
        x = keras.layers.Conv2D(
            stem_width,
            7,
            strides=2,
            padding=padding,
            use_bias=False,
            kernel_initializer="he_normal",
            name="stem_conv",
        )(x)
        x = conventions.batch_norm(x, MOMENTUM, "stem_bn")
        x = keras.layers.ReLU(name="stem_relu")(x)
        # Zero padding is the release's -inf padding here: the input is a ReLU's.
        x, padding = conventions.release_padding(x, 3, 2, "stem_pool")
        x = keras.layers.MaxPooling2D(3, strides=2, padding=padding, name="stem_pool")(
            x
        )
        for stage, width in enumerate(stage_widths):
            for block in range(2):
                strides = 2 if stage > 0 and block == 0 else 1
                name = f"stage{stage + 1}_{block + 1}"
                x = residual_block(x, convs, width, strides, MOMENTUM, name)
        return x

    return conventions.build(features, 224, 32, sources=WEIGHTS, **application_args)


IMAGENET_DOC = """{title}

{description}

Args:
    include_top: whether to include the 1000-way (`classes`) classifier.
    weights: `None` or the path to a weights file saved with
        `model.save_weights()`.
    input_tensor: optional Keras tensor to use as the image input.
    input_shape: optional shape tuple; `(224, 224, 3)` with the top,
        `(None, None, 3)` without. At least 32x32.
    pooling: with `include_top=False`: `None` (4D output), `"avg"` or `"max"`.
    classes: number of classes, with `include_top=True`.
    classifier_activation: activation of the classifier, or `None` for logits.
    name: model name.
{extra}"""

_IMPLEMENTATION_ARG = "    implementation: see `keras_igc.IGCConv2D`.\n"


@register("imagenet", rows={"IGC-L4M32+Ident.": {}})
def IGCNetL4M32(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="igc_l4m32_ident",
    implementation="auto",
):
    return imagenet_network(
        IGCConvs(primary_partitions=4, implementation=implementation),
        128,
        (128, 256, 512, 1024),
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


@register("imagenet", rows={"IGC-L16M16+Ident.": {}})
def IGCNetL16M16(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="igc_l16m16_ident",
    implementation="auto",
):
    return imagenet_network(
        IGCConvs(primary_partitions=16, implementation=implementation),
        256,
        (256, 512, 1024, 2048),
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


@register("imagenet", rows={"IGC-L100M2+Ident.": {}})
def IGCNetL100M2(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="igc_l100m2_ident",
    implementation="auto",
):
    return imagenet_network(
        IGCConvs(secondary_partitions=2, implementation=implementation),
        100,
        (200, 400, 800, 1600),
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


IGCNetL4M32.__doc__ = IMAGENET_DOC.format(
    title="IGC-L4M32+Ident. for ImageNet (224x224).",
    description="Stem 128; stages 128/256/512/1024 with L = 4 (M = 32..256).",
    extra=_IMPLEMENTATION_ARG,
)
IGCNetL16M16.__doc__ = IMAGENET_DOC.format(
    title="IGC-L16M16+Ident. for ImageNet (224x224).",
    description="Stem 256; stages 256/512/1024/2048 with L = 16 (M = 16..128).",
    extra=_IMPLEMENTATION_ARG,
)
IGCNetL100M2.__doc__ = IMAGENET_DOC.format(
    title="IGC-L100M2+Ident. for ImageNet (224x224).",
    description="Stem 100; stages 200/400/800/1600 with M = 2 (L = 100..800); "
    "stage 1 projects 100 -> 200.",
    extra=_IMPLEMENTATION_ARG,
)


@register("imagenet")
def igc_imagenet_network(
    stem_width,
    stage_widths,
    primary_partitions=None,
    secondary_partitions=None,
    implementation="auto",
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
):
    return imagenet_network(
        _convs(primary_partitions, secondary_partitions, implementation),
        positive_int(stem_width, "stem_width", "igc_imagenet_network"),
        _stage_widths(stage_widths),
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name or f"igc_imagenet_s{stem_width}",
    )


igc_imagenet_network.__doc__ = IMAGENET_DOC.format(
    title="The IGC paper's ImageNet network at any widths (224x224).",
    description="The skeleton of `IGCNetL4M32` and the others: `stem_width`, four "
    "`stage_widths`, and IGC blocks with `primary_partitions` L fixed in every "
    "stage, or `secondary_partitions` M fixed; with neither, regular "
    "convolutions (the ResNet-18 baselines). `from_release_weights` builds "
    "narrowed release graphs with it.",
    extra=_IMPLEMENTATION_ARG,
)


def _convs(L, M, implementation):
    if L is not None and M is not None:
        raise ValueError(
            "igc_imagenet_network fixes one of `primary_partitions` (L) and "
            "`secondary_partitions` (M) in every stage, the other follows from "
            f"the width. Received: primary_partitions={L!r}, "
            f"secondary_partitions={M!r}."
        )
    if L is None and M is None:
        return RegularConvs()
    if L is not None:
        positive_int(L, "primary_partitions", "igc_imagenet_network")
    else:
        positive_int(M, "secondary_partitions", "igc_imagenet_network")
    return IGCConvs(L, M, implementation=implementation)


def _stage_widths(widths):
    if not isinstance(widths, list | tuple) or len(widths) != 4:
        raise ValueError(
            "`stage_widths` must be the four stage widths, e.g. (128, 256, 512, "
            f"1024). Received: stage_widths={widths!r}."
        )
    owner = "igc_imagenet_network"
    return tuple(positive_int(w, "stage_widths", owner) for w in widths)


# `preprocess_input` modes: per-channel statistics (`keras_igc.statistics`).
PREPROCESSING = {
    mode: statistics.NORMALIZATIONS[mode] for mode in ("igc-release", "torch")
}


def preprocess_input(x, mode="igc-release"):
    """RGB images with values in 0-255 to the networks' input.

    Like `keras.applications.resnet.preprocess_input`, the networks take
    normalised input and this function does the normalisation: per-channel
    `(x - mean) / std` with `mode="igc-release"` (the release's statistics,
    what its checkpoints and `keras_igc.data`'s ImageNet pipeline use) or
    `mode="torch"` (torchvision's).
    """
    if mode not in PREPROCESSING:
        raise ValueError(
            f"`mode` must be one of {sorted(PREPROCESSING)}. Received: mode={mode!r}."
        )
    mean, std = (tuple(255 * v for v in values) for values in PREPROCESSING[mode])
    x = keras.ops.convert_to_tensor(x, "float32")
    return (x - keras.ops.convert_to_tensor(mean, "float32")) / (
        keras.ops.convert_to_tensor(std, "float32")
    )


def imagenet_class_names():
    """The 1,000 ImageNet class names, index by index (shipped with keras_igc)."""
    from keras_igc import data

    return data.class_names("imagenet2012")


def from_release_weights(
    path,
    include_top=True,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classifier_activation="softmax",
    name=None,
    implementation="auto",
):
    """The ImageNet network a release checkpoint describes, with its weights.

    `path` is the checkpoint's path, or its arrays as `read_mxnet_params`
    returns them.

    Widths, partitions and classes come from the file's shapes, so any of the
    release's five ImageNet checkpoints (and narrowed ones of the same graphs)
    builds; the other arguments are keras.applications'.

    Returns:
        A model whose `name` says which network it is (`igc_l100m2_ident` for
        IGC-L100M2+Ident., `resnet18_c69`, ...).
    """
    if not isinstance(path, dict):
        path = mxnet.read_mxnet_params(os.fspath(path))
    params = path
    network = mxnet.describe_release_weights(params)
    model = igc_imagenet_network(
        network["stem"],
        network["widths"],
        network["primary_partitions"],
        network["secondary_partitions"],
        implementation=implementation,
        include_top=include_top,
        weights=None,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=network["classes"],
        classifier_activation=classifier_activation,
        name=name or network["name"],
    )
    WEIGHTS.load(model, params)
    return model

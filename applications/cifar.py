"""The IGC paper's CIFAR-10/100 and SVHN networks and their baselines.

Skeleton (Zhang et al., "Interleaved Group Convolutions for Deep Neural
Networks", ICCV 2017, arXiv:1707.02725, as its authors' MXNet release builds
it): a 3x3 stem to the stage-1
width, three stages of widths w, 2w, 4w on 32x32, 16x16 and 8x8 maps (stride 2
in the first convolution of stages 2 and 3), global average pooling and a
classifier. Plain nets have (D-2)/3 units per stage, each convolution ->
BatchNorm -> ReLU; residual nets ("+Ident.") have (D-2)/6 two-unit blocks per
stage. In IGC nets L stays fixed and M doubles from stage to stage.
"""

import keras

from keras_igc import statistics
from keras_igc.applications import conventions
from keras_igc.applications.blocks import plain_unit, residual_block
from keras_igc.applications.conv_families import (
    TRANSITIONS,
    IGCConvs,
    RegularConvs,
    SumFusionConvs,
)
from keras_igc.applications.registry import register
from keras_igc.applications.weights import Sources, mxnet
from keras_igc.validation import positive_int

CIFAR_MEAN, CIFAR_STD = statistics.CIFAR10

# The release's BatchNorm momentum: 0.99 in plain nets, 0.9 in residual nets.
PLAIN_MOMENTUM, RESIDUAL_MOMENTUM = 0.99, 0.9


def units_per_stage(depth, residual):
    """Units (plain) or blocks (residual) per stage; a clear error for a bad depth."""
    per_unit = 6 if residual else 3
    if (
        isinstance(depth, bool)
        or not isinstance(depth, int)
        or depth < per_unit + 2
        or (depth - 2) % per_unit
    ):
        form = "6k+2 (e.g. 8, 20, 38)" if residual else "3k+2 (e.g. 8, 20, 38)"
        kind = "residual" if residual else "plain"
        raise ValueError(
            f"The depth of a {kind} CIFAR network must be of the form {form} with "
            f"k >= 1: {(depth - 2) // per_unit if isinstance(depth, int) else '?'} "
            f"stages' worth of units does not fit. Received: depth={depth!r}."
        )
    return (depth - 2) // per_unit


def _units(stage1_width, depth, residual):
    """The skeleton: `(width, strides, name)` of every unit (plain) or block
    (residual), in order."""
    units = units_per_stage(depth, residual)
    for stage in range(3):
        for unit in range(units):
            strides = 2 if stage > 0 and unit == 0 else 1
            yield stage1_width * 2**stage, strides, f"stage{stage + 1}_{unit + 1}"


def conv_weights(convs, stage1_width, depth, residual=False, input_channels=3):
    """Convolution weights of the network `_cifar_network` builds from the
    same arguments, counted without building it (the convention of
    `complexity.model_complexity`: stem, blocks and projections; no biases,
    BatchNorm or classifier)."""
    total = 9 * input_channels * stage1_width  # the stem
    inputs = stage1_width
    for width, strides, _ in _units(stage1_width, depth, residual):
        total += convs.conv_weights(inputs, width)
        if residual:  # mirrors blocks.residual_block
            total += convs.conv_weights(width, width)
            if strides != 1 or inputs != width:
                total += convs.projection_weights(inputs, width)
        inputs = width
    return total


def igc_conv_weights(L, M, depth, residual=False, input_channels=3):
    """Convolution weights of `igc_cifar_network(depth, residual, L, M)`."""
    return conv_weights(IGCConvs(L), L * M, depth, residual, input_channels)


# The weights these networks take besides Keras files: the IGC authors'
# MXNet checkpoints (`weights="...-0095.params"`).
WEIGHTS = Sources("the IGC CIFAR networks", (mxnet.FORMAT,))


def _cifar_network(convs, stage1_width, depth, residual, **application_args):
    """The CIFAR skeleton; `application_args` are the keras.applications ones."""
    units_per_stage(depth, residual)  # a clear error before any layer
    momentum = RESIDUAL_MOMENTUM if residual else PLAIN_MOMENTUM
    block = residual_block if residual else plain_unit

    def features(image):
        x = keras.layers.Conv2D(
            stage1_width,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name="stem_conv",
        )(image)
        x = conventions.batch_norm(x, momentum, "stem_bn")
        x = keras.layers.ReLU(name="stem_relu")(x)
        for width, strides, name in _units(stage1_width, depth, residual):
            x = block(x, convs, width, strides, momentum, name)
        return x

    return conventions.build(features, 32, 8, sources=WEIGHTS, **application_args)


def _default_name(prefix, depth, residual):
    return f"{prefix}_d{depth}{'_ident' if residual else ''}"


def _rows(prefix, **preset):
    """A paper row in its plain and "+Ident." (residual) forms."""
    return {
        f"{prefix}{'+Ident.' if residual else ''}": {"residual": residual, **preset}
        for residual in (False, True)
    }


@register(
    "cifar",
    rows={
        **_rows("IGC-L24M2", primary_partitions=24, secondary_partitions=2),
        **_rows("IGC-L4M8", primary_partitions=4, secondary_partitions=8),
        **_rows("IGC-L32M26", primary_partitions=32, secondary_partitions=26),
        **_rows("IGC-L16M32", primary_partitions=16, secondary_partitions=32),
    },
)
def igc_cifar_network(
    depth,
    residual=False,
    primary_partitions=24,
    secondary_partitions=2,
    implementation="auto",
    transition="paper",
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
):
    """IGC network for 32x32 images of any depth (see `IGCNet20`).

    `transition`: `"paper"` (the paper's definition) or `"release"`, for
    residual networks the release's `resnet_igc.py`, whose unit that widens
    stages 2 and 3 keeps the previous stage's M in its secondary convolution:
    the paper's +Ident. weight counts, and what the release's CIFAR
    checkpoints (`weights="...params"`) need. Plain networks are the same
    either way.
    """
    L = positive_int(primary_partitions, "primary_partitions")
    M = positive_int(secondary_partitions, "secondary_partitions")
    return _cifar_network(
        # The release's plain networks widen as the paper does.
        IGCConvs(
            L,
            implementation=implementation,
            transition=transition if residual else TRANSITIONS[0],
        ),
        L * M,
        depth,
        residual,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name or _default_name(f"igc_l{L}m{M}", depth, residual),
    )


@register(
    "cifar", rows={**_rows("RegConv-W16", width=16), **_rows("RegConv-W18", width=18)}
)
def regconv_cifar_network(
    depth,
    residual=False,
    width=16,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
):
    """The RegConv-Wc baseline: dense 3x3 convolutions of width c, 2c, 4c."""
    return _cifar_network(
        RegularConvs(),
        width,
        depth,
        residual,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name or _default_name(f"regconv_w{width}", depth, residual),
    )


@register("cifar", rows=_rows("SumFusion-L8W32", primary_partitions=8, width=32))
def sum_fusion_cifar_network(
    depth,
    residual=False,
    primary_partitions=8,
    width=32,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
):
    """Summation-fusion baseline: L grouped branches summed by a 1x1 (ResNeXt-style).

    The defaults (L=8, width 32) match the budget of RegConv-W16 and IGC-L4M8
    (at D=20: 0.264 M convolution weights against 0.268 M and 0.274 M), for the
    paper's comparison at matched parameters.
    """
    return _cifar_network(
        SumFusionConvs(primary_partitions),
        width,
        depth,
        residual,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name
        or _default_name(f"sumfusion_l{primary_partitions}w{width}", depth, residual),
    )


# The named builders: keras.applications signatures, the paper's IGC-L24M2 by
# default, one shared docstring (`_BUILDER_DOC`).


@register("cifar")
def IGCNet8(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    primary_partitions=24,
    secondary_partitions=2,
    implementation="auto",
    transition="paper",
):
    return igc_cifar_network(
        8,
        residual=False,
        primary_partitions=primary_partitions,
        secondary_partitions=secondary_partitions,
        implementation=implementation,
        transition=transition,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


@register("cifar")
def IGCNet20(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    primary_partitions=24,
    secondary_partitions=2,
    implementation="auto",
    transition="paper",
):
    return igc_cifar_network(
        20,
        residual=False,
        primary_partitions=primary_partitions,
        secondary_partitions=secondary_partitions,
        implementation=implementation,
        transition=transition,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


@register("cifar")
def IGCNet38(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    primary_partitions=24,
    secondary_partitions=2,
    implementation="auto",
    transition="paper",
):
    return igc_cifar_network(
        38,
        residual=False,
        primary_partitions=primary_partitions,
        secondary_partitions=secondary_partitions,
        implementation=implementation,
        transition=transition,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


@register("cifar")
def IGCResNet20(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    primary_partitions=24,
    secondary_partitions=2,
    implementation="auto",
    transition="paper",
):
    return igc_cifar_network(
        20,
        residual=True,
        primary_partitions=primary_partitions,
        secondary_partitions=secondary_partitions,
        implementation=implementation,
        transition=transition,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


@register("cifar")
def IGCResNet38(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    primary_partitions=24,
    secondary_partitions=2,
    implementation="auto",
    transition="paper",
):
    return igc_cifar_network(
        38,
        residual=True,
        primary_partitions=primary_partitions,
        secondary_partitions=secondary_partitions,
        implementation=implementation,
        transition=transition,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )


_BUILDER_DOC = """Depth-{depth} {kind} IGC network for 32x32 images (CIFAR/SVHN).

Stem 3x3 to G = L*M, then three stages of {units} of widths G, 2G, 4G
(L fixed, M doubling), each IGCConv2D -> BatchNorm -> ReLU; global average
pooling and a classifier. The defaults are the paper's IGC-L24M2 (Zhang et
al., "Interleaved Group Convolutions for Deep Neural Networks", ICCV 2017,
CIFAR table).

Args:
    include_top: whether to include the classifier.
    weights: `None`, the path to a weights file saved with
        `model.save_weights()`, or a CIFAR checkpoint of the authors'
        MXNet release (`*.params`).
    input_tensor: optional Keras tensor to use as the image input.
    input_shape: optional shape tuple; `(32, 32, 3)` with the top,
        `(None, None, 3)` without. At least 8x8.
    pooling: with `include_top=False`: `None` (4D output), `"avg"` or
        `"max"`.
    classes: number of classes, with `include_top=True`.
    classifier_activation: activation of the classifier, or `None` for
        logits.
    name: model name.
    primary_partitions: L (default 24). L = 1: regular convolutions with a
        per-channel scale.
    secondary_partitions: M of the first stage (default 2). M = 1: the
        Xception-like block.
    implementation: see `keras_igc.IGCConv2D`.
    transition: `"paper"` or `"release"` (see `igc_cifar_network`).

Example:

>>> import keras_igc
>>> model = keras_igc.applications.{builder}()
>>> model.output_shape
(None, 10)
"""

IGCNet8.__doc__ = _BUILDER_DOC.format(
    depth=8, kind="plain", units="2 units", builder="IGCNet8"
)
IGCNet20.__doc__ = _BUILDER_DOC.format(
    depth=20, kind="plain", units="6 units", builder="IGCNet20"
)
IGCNet38.__doc__ = _BUILDER_DOC.format(
    depth=38, kind="plain", units="12 units", builder="IGCNet38"
)
IGCResNet20.__doc__ = _BUILDER_DOC.format(
    depth=20,
    kind="residual (+Ident.)",
    units="3 two-unit blocks",
    builder="IGCResNet20",
)
IGCResNet38.__doc__ = _BUILDER_DOC.format(
    depth=38,
    kind="residual (+Ident.)",
    units="6 two-unit blocks",
    builder="IGCResNet38",
)


def preprocess_input(x, mean=CIFAR_MEAN, std=CIFAR_STD):
    """The paper's CIFAR/SVHN normalisation: per-channel mean and std.

    Args:
        x: images with values in [0, 255], channels last (a NumPy array or a
            tensor).
        mean, std: per-channel statistics on a [0, 1] scale (default
            CIFAR-10's). Their length must match the number of channels.

    Returns:
        `(x / 255 - mean) / std` as float32.
    """
    x = keras.ops.cast(x, "float32")
    channels = x.shape[-1]
    if channels != len(mean) or channels != len(std):
        raise ValueError(
            f"preprocess_input got images with {channels} channels but "
            f"{len(mean)} means and {len(std)} stds. Pass `mean` and `std` with "
            f"one value per channel."
        )
    return (x / 255.0 - keras.ops.array(mean)) / keras.ops.array(std)

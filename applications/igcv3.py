"""IGCV3, the IGC family's mobile network, op for op as the model zoo builds it.

IGCV3: Sun, Li, Liu and Wang, "IGCV3: Interleaved Low-Rank Group Convolutions
for Efficient Deep Neural Networks", BMVC 2018, arXiv:1806.00178; the authors'
release is MXNet (homles11/IGCV3, `symbols/igcv3.py` and the released graph
`models/igcv3-symbol.json`). The weights practitioners use are imgclsmob's
(`pytorchcv.models.igcv3`: `igcv3_w1`, `igcv3_w3d4`, `igcv3_wd2`, `igcv3_wd4`),
whose 1.0x network is the released graph.

The block is MobileNetV2's inverted residual with its two pointwise
convolutions made group convolutions, interleaved by a permutation:

    1x1 group convolution, 2 groups, widening t times -> BatchNorm (linear)
    -> channel shuffle, 2 groups
    -> 3x3 depthwise convolution (the block's stride) -> BatchNorm -> ReLU6
    -> 1x1 group convolution, 2 groups -> BatchNorm (linear)
    -> + input, where the stride is 1 and the widths agree

The network: a 3x3 stride-2 stem to 32 channels (BatchNorm, ReLU6), the
`(t, c, n, s)` rows of `ROWS` (32 blocks), a 1x1 convolution to 1280 channels
(BatchNorm, ReLU6), global average pooling and a classifier with bias.
BatchNorm has epsilon 1e-5 and momentum 0.9 (PyTorch's 0.1); every k x k
window is padded k // 2 on all sides, as MXNet and PyTorch pad.

Widths follow pytorchcv (those are the published weights): every width `c`
becomes `make_even(int(c * alpha))` and the last 1x1 keeps 1280 unless
`alpha > 1`. The authors' `symbols/igcv3.py` computes the first block's input
of each row from an already scaled width (so scales it twice) when
`alpha != 1`; only its 1.0x network was released, where both agree.

Layer names mirror pytorchcv's modules (`stage{i}_unit{j}_conv{k}` is
`features.stage{i}.unit{j}.conv{k}`), which is what lets its state_dicts and
the release's MXNet checkpoints load by name (`weights/pytorchcv.py`).
"""

import keras

from keras_igc.applications import conventions
from keras_igc.applications.igcv3_plan import (  # noqa: F401 (igcv3.plan, ...)
    GROUPS,
    LAST_WIDTH,
    ROWS,
    STEM_WIDTH,
    WIDTHS,
    Unit,
    check_alpha,
    plan,
)
from keras_igc.applications.registry import register
from keras_igc.applications.weights import Sources, published, pytorchcv
from keras_igc.layers import ChannelShuffle, GroupConv2D

MOMENTUM, EPSILON = 0.9, 1e-5


def _bn(x, name):
    return conventions.batch_norm(x, MOMENTUM, name, EPSILON)


def _pointwise(x, filters, name):
    """A 1x1 convolution with `GROUPS` groups and its (linear) BatchNorm."""
    x = GroupConv2D(
        filters, 1, groups=GROUPS, use_bias=False,
        kernel_initializer="he_uniform", name=name,
    )(x)  # fmt: skip
    return _bn(x, f"{name}_bn")


def _conv(x, filters, kernel_size, strides, name):
    """A dense convolution with BatchNorm and ReLU6, padded k // 2 all round."""
    x, padding = conventions.release_padding(x, kernel_size, strides, name)
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False,
        kernel_initializer="he_uniform", name=name,
    )(x)  # fmt: skip
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(_bn(x, f"{name}_bn"))


def igcv3_block(x, unit):
    """One IGCV3 block (the module docstring's diagram) for a `Unit`."""
    name = unit.name
    y = _pointwise(x, unit.hidden, f"{name}_conv1")
    # No activation before the shuffle: with the depthwise convolution it is
    # one interleaved pair, as in IGC's primary and secondary.
    y = ChannelShuffle(GROUPS, name=f"{name}_shuffle")(y)
    y, padding = conventions.release_padding(y, 3, unit.strides, f"{name}_conv2")
    y = keras.layers.DepthwiseConv2D(
        3, strides=unit.strides, padding=padding, use_bias=False,
        depthwise_initializer="he_uniform", name=f"{name}_conv2",
    )(y)  # fmt: skip
    y = keras.layers.ReLU(6.0, name=f"{name}_conv2_relu")(_bn(y, f"{name}_conv2_bn"))
    y = _pointwise(y, unit.outputs, f"{name}_conv3")
    if unit.residual:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def igcv3_features(alpha):
    """`features(image)` of IGCV3 at width `alpha`, for `conventions.build`."""
    stem, units, last = plan(alpha)

    def features(image):
        x = _conv(image, stem, 3, 2, "init_block_conv")
        for unit in units:
            x = igcv3_block(x, unit)
        return _conv(x, last, 1, 1, "final_block_conv")

    return features


# IGCV3's weights: pytorchcv's state_dicts and the authors' MXNet checkpoint,
# and pytorchcv's published files for `weights="imagenet"` (pytorchcv 0.0.74's
# model_metainfos.csv), by alpha.
for _name, _error, _sha1, _release in (
    ("igcv3_w1", "0920", "12385791681f09adb3a08926c95471f332f538b6", "v0.0.243"),
    ("igcv3_w3d4", "1140", "63f43cf8d334111d55d06f2f9bf7e1e4871d162c", "v0.0.207"),
    ("igcv3_wd2", "1732", "8c504f443283d8a32787275b23771082fcaab61b", "v0.0.132"),
    ("igcv3_wd4", "2871", "c9f28301391601e5e8ae93139431a9e0d467317c", "v0.0.142"),
):
    published.register(
        published.pytorchcv(_name, _error, _sha1, _release), replace=True
    )
WEIGHTS = Sources(
    "IGCV3",
    pytorchcv.FORMATS,
    published=WIDTHS,
    published_from="pytorchcv",
    key_name="alpha",
)


@register(
    "imagenet",
    rows={f"IGCV3-{alpha:g}": {"alpha": alpha} for alpha in WIDTHS},
    any_size=True,
)
def IGCV3(
    alpha=1.0,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
):
    """IGCV3 (Sun et al., BMVC 2018), as pytorchcv and the authors' release
    build it.

    Args:
        alpha: the width multiplier. pytorchcv's published widths are 1.0,
            0.75, 0.5 and 0.25 (registered as `"IGCV3-1"`, `"IGCV3-0.75"`,
            `"IGCV3-0.5"`, `"IGCV3-0.25"`); any alpha >= 1/16 builds.
        include_top, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as for
            `keras.applications.MobileNetV2`. The input is 224x224 with the
            top, any size of at least 32x32 without it; images are normalised
            with torchvision's statistics (`preprocess_input`).
        weights: `None` (random), `"imagenet"` (pytorchcv's published file
            for this alpha, downloaded once into Keras' cache folder
            (`$KERAS_HOME`, else `~/.keras`) by
            `keras_igc.applications.weights.published.fetch`, its SHA-1 checked,
            then converted), a pytorchcv state_dict
            (`.pth`, any of the four widths; needs PyTorch to read), the
            authors' MXNet checkpoint (`.params`, 1.0x), or a Keras weights
            file of this network.

    Returns:
        A `keras.Model`.

    Example:

    >>> from keras_igc import applications
    >>> model = applications.IGCV3(alpha=0.25, input_shape=(64, 64, 3), classes=10)
    >>> model.output.shape
    (None, 10)
    """
    alpha = check_alpha(alpha)
    name = name or f"igcv3_{alpha:g}".replace(".", "_")
    return conventions.build(
        igcv3_features(alpha), 224, 32, include_top, weights, input_tensor,
        input_shape, pooling, classes, classifier_activation, name,
        sources=WEIGHTS, alpha=alpha,
    )  # fmt: skip


def preprocess_input(x):
    """RGB images in 0-255 to IGCV3's input: torchvision's per-channel
    statistics, which pytorchcv's weights were trained with."""
    from keras_igc.applications.imagenet import preprocess_input as normalise

    return normalise(x, mode="torch")

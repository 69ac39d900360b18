"""MSGC host networks, wired and counted as the authors' release builds them.

MSGC: Su et al., "Boosting Convolutional Neural Networks with Middle Spectrum
Grouped Convolution", IEEE TNNLS 2024, arXiv:2304.06305.

The MSGC release (hellozhuo/msgc, PyTorch) fine-tunes torchvision's ImageNet
ResNet-18, ResNet-50 (v1.5) and MobileNetV2. These builders are those networks
in Keras, layer for layer (symmetric padding, BatchNorm with PyTorch's epsilon
1e-5 and momentum 0.1, i.e. Keras 0.9), with the release's MSGC blocks:

- basic block (ResNet-18): the first 3x3 convolution gets a per-sample mask on
  its input channels, the second is a `heads`-head MSGC convolution; with
  `attention`, both have attention;
- bottleneck (ResNet-50, stride in the 3x3): masks on the inputs of both 1x1
  convolutions, the 3x3 a `heads`-head MSGC convolution, attention on it only;
  generators squeeze 8x;
- inverted residual (MobileNetV2): the 1x1 projection is a `heads`-head MSGC
  convolution (attention optional).

Every generator of a block reads the pooled *block input*. These networks are
built layer by layer, not through `keras_igc.msgc.convert`: `convert` turns
any dense Functional model into an MSGC one with a generic MAC count, while
the hosts follow the release's wiring (generators on the block input) and
count MACs as it does, term by term (`_Ledger`): BatchNorm, pooling and the generators
counted, attention products counted and left out of the dense reference, and
the work that no head reads credited back (`MACRegularizer` bonuses). At
224x224 the dense references are 1817.2 / 4099.7 / 306.9 M.

Weights: `weights=` a Keras weights file or a release checkpoint
(`.pth`/`.pth.tar`); `dense_weights=` a torchvision state_dict
(`resnet18-f37072fd.pth`, `resnet50-0676ba61.pth`, MobileNetV2) or a dense
Keras model with the same layer names (`applications.ResNet18`,
`applications.ResNet50`, `keras.applications.MobileNetV2`). Reading `.pth`
files needs PyTorch; nothing is downloaded. The model's last layer is the
`MACRegularizer`; reach the classifier with `model.get_layer("predictions")`.
"""

import os

import keras

from keras_igc import msgc as msgc_module
from keras_igc.applications import conventions
from keras_igc.applications.registry import register
from keras_igc.applications.weights import Sources, pytorch
from keras_igc.layers import MACRegularizer, MSGCConv2D
from keras_igc.layers.mask_generator import kaiming_fan_out
from keras_igc.saving import load_keras_model
from keras_igc.traced_model import TracedModel
from keras_igc.validation import positive_int

HOSTS = ("MSGCResNet18", "MSGCResNet50", "MSGCMobileNetV2")
REFERENCE_SIZE = 224  # the release counts MACs per 224x224 image
MOMENTUM, EPSILON = 0.9, 1e-5  # PyTorch's BatchNorm2d defaults


class _Ledger:
    """The MACs of a network, kept as the release keeps them while it builds.

    `fixed` work is in the network and in its dense reference; `generators`
    only in the network; a `masked` convolution's work scales with the mean
    of its gates, and its attention products are not in the reference.
    """

    def __init__(self):
        self.static = 0
        self.dense = 0
        self.convolutions, self.bonuses, self.gates = [], [], []

    def fixed(self, macs):
        self.static += macs
        self.dense += macs

    def generators(self, macs):
        self.static += macs

    def masked(self, gates, macs, heads, attention_macs=0):
        self.gates.append(gates)
        self.convolutions.append({"macs": macs, "heads": heads})
        self.dense += macs - attention_macs
        return len(self.gates) - 1

    def credit(self, reader, producer=None, upstream_macs=None):
        if producer is not None:
            self.bonuses.append({"reader": reader, "producer": producer})
        else:
            self.bonuses.append({"reader": reader, "upstream_macs": upstream_macs})


def _out(size, kernel, stride):
    """PyTorch's output size with padding kernel // 2."""
    pad = kernel // 2
    return tuple((s + 2 * pad - kernel) // stride + 1 for s in size)


def _area(size):
    return size[0] * size[1]


def _pad(x, kernel, stride, name):
    """Pad k // 2 on every side, as PyTorch does (Keras' "same" does not for
    stride 2)."""
    if stride == 1 or kernel == 1:
        return x, "same"
    return keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x), "valid"


def _conv(x, filters, kernel, stride, name):
    x, padding = _pad(x, kernel, stride, name)
    return keras.layers.Conv2D(
        filters, kernel, strides=stride, padding=padding, use_bias=False,
        kernel_initializer=kaiming_fan_out(), name=name,
    )(x)  # fmt: skip


def _msgc_conv(
    x, source, filters, kernel, stride, heads, squeeze, attention, name, gating
):  # fmt: skip
    """An MSGC convolution masked from `source`, in the network's
    `implementation` (`gating`); `(outputs, gates, layer)`."""
    x, padding = _pad(x, kernel, stride, name)
    layer = MSGCConv2D(
        filters, kernel, heads=heads, strides=stride, padding=padding,
        squeeze=squeeze, attention=attention,
        granularity=gating["granularity"], implementation=gating["implementation"],
        kernel_initializer=kaiming_fan_out(), name=name,
    )  # fmt: skip
    outputs, gates = layer([x, source])
    return outputs, gates, layer


def _generator_macs(layer):
    channels = layer.mask_generator.reduce.kernel.shape[0]
    macs = layer.mask_generator.macs(channels)
    if layer.attention:
        macs += layer.attention_generator.macs(channels)
    return macs


def _bn(x, name):
    return conventions.batch_norm(x, MOMENTUM, name, EPSILON)


def _relu(x, name, cap=None):
    return keras.layers.ReLU(max_value=cap, name=name)(x)


# ---------------------------------------------------------------- blocks


def _basic_block(x, planes, stride, size, ledger, gating, name):
    """The release's `DyBasicBlock` (torchvision's BasicBlock if not `gating`)."""
    inplanes = x.shape[-1]
    out = _out(size, 3, stride)
    heads, attention = gating["heads"], gating["attention"]
    conv1 = 9 * inplanes * planes * _area(out) + planes * _area(out)
    conv2 = (9 * planes + 1) * planes * _area(out)
    if gating["msgc"]:
        y, gates1, layer1 = _msgc_conv(
            x, x, planes, 3, stride, 1, 4, attention, f"{name}_1_conv", gating
        )
        first = ledger.masked(
            gates1, conv1 + attention * inplanes * _area(size), 1,
            attention * inplanes * _area(size),
        )  # fmt: skip
    else:
        y = _conv(x, planes, 3, stride, f"{name}_1_conv")
        ledger.fixed(conv1)
    y = _relu(_bn(y, f"{name}_1_bn"), f"{name}_1_relu")
    if gating["msgc"]:
        y, gates2, layer2 = _msgc_conv(
            y, x, planes, 3, 1, heads, 4, attention, f"{name}_2_conv", gating
        )
        extra = attention * heads * planes * _area(out)
        second = ledger.masked(gates2, conv2 + extra, heads, extra)
        ledger.credit(second, producer=first)
        ledger.generators(
            inplanes * _area(size) + _generator_macs(layer1) + _generator_macs(layer2)
        )
    else:
        y = _conv(y, planes, 3, 1, f"{name}_2_conv")
        ledger.fixed(conv2)
    y = _bn(y, f"{name}_2_bn")
    return _residual(x, y, stride, out, ledger, name), out


def bottleneck(x, planes, stride, size, ledger, gating, name):
    """The release's `DyBottleneck` (torchvision's v1.5 Bottleneck if not
    `gating`): the stride sits in the 3x3 convolution."""
    inplanes, width = x.shape[-1], planes
    out = _out(size, 3, stride)
    heads, attention = gating["heads"], gating["attention"]
    conv1 = inplanes * width * _area(size) + width * _area(size)
    conv2 = 9 * width * width * _area(out) + width * _area(out)
    conv3 = (width + 1) * 4 * planes * _area(out)
    if gating["msgc"]:
        y, gates1, layer1 = _msgc_conv(
            x, x, width, 1, 1, 1, 8, False, f"{name}_1_conv", gating
        )
        first = ledger.masked(gates1, conv1, 1)
    else:
        y = _conv(x, width, 1, 1, f"{name}_1_conv")
        ledger.fixed(conv1)
    y = _relu(_bn(y, f"{name}_1_bn"), f"{name}_1_relu")
    if gating["msgc"]:
        y, gates2, layer2 = _msgc_conv(
            y, x, width, 3, stride, heads, 8, attention, f"{name}_2_conv", gating
        )
        # The release counts the attention products at the 3x3's input size.
        extra = attention * heads * width * _area(size)
        second = ledger.masked(gates2, conv2 + extra, heads, extra)
        ledger.credit(second, producer=first)
    else:
        y = _conv(y, width, 3, stride, f"{name}_2_conv")
        ledger.fixed(conv2)
    y = _relu(_bn(y, f"{name}_2_bn"), f"{name}_2_relu")
    if gating["msgc"]:
        y, gates3, layer3 = _msgc_conv(
            y, x, 4 * planes, 1, 1, 1, 8, False, f"{name}_3_conv", gating
        )
        third = ledger.masked(gates3, conv3, 1)
        ledger.credit(third, producer=second)
        ledger.generators(
            inplanes * _area(size)
            + sum(_generator_macs(layer) for layer in (layer1, layer2, layer3))
        )
    else:
        y = _conv(y, 4 * planes, 1, 1, f"{name}_3_conv")
        ledger.fixed(conv3)
    y = _bn(y, f"{name}_3_bn")
    return _residual(x, y, stride, out, ledger, name), out


def _residual(x, y, stride, out, ledger, name):
    """Add the shortcut (a 1x1 projection + BatchNorm where the shape
    changes; the release counts the projection, not its BatchNorm), ReLU."""
    if stride != 1 or x.shape[-1] != y.shape[-1]:
        ledger.fixed(x.shape[-1] * y.shape[-1] * _area(out))
        x = _bn(_conv(x, y.shape[-1], 1, stride, f"{name}_proj"), f"{name}_proj_bn")
    y = keras.layers.Add(name=f"{name}_add")([y, x])
    return _relu(y, f"{name}_out")


def _inverted_residual(x, filters, stride, expansion, size, ledger, gating, name):
    """The release's `DyInvertedResidual` (torchvision's InvertedResidual if
    not `gating`), with Keras MobileNetV2's layer names."""
    inplanes = x.shape[-1]
    hidden = int(round(inplanes * expansion))
    out = _out(size, 3, stride)
    heads, attention = gating["heads"], gating["attention"]
    y = x
    upstream = 0
    if expansion != 1:
        y = _conv(y, hidden, 1, 1, f"{name}_expand")
        y = _relu(_bn(y, f"{name}_expand_BN"), f"{name}_expand_relu", 6.0)
        upstream += inplanes * hidden * _area(size) + hidden * _area(size)
    y, padding = _pad(y, 3, stride, f"{name}_depthwise")
    y = keras.layers.DepthwiseConv2D(
        3, strides=stride, padding=padding, use_bias=False,
        depthwise_initializer=kaiming_fan_out(), name=f"{name}_depthwise",
    )(y)  # fmt: skip
    y = _relu(_bn(y, f"{name}_depthwise_BN"), f"{name}_depthwise_relu", 6.0)
    upstream += 9 * hidden * _area(out) + hidden * _area(out)
    ledger.fixed(upstream)
    project = hidden * filters * _area(out)
    if gating["msgc"]:
        y, gates, layer = _msgc_conv(
            y, x, filters, 1, 1, heads, 4, attention, f"{name}_project", gating
        )
        extra = attention * heads * hidden * _area(out)
        index = ledger.masked(gates, project + extra, heads, extra)
        ledger.credit(index, upstream_macs=upstream)
        ledger.generators(inplanes * _area(size) + _generator_macs(layer))
    else:
        y = _conv(y, filters, 1, 1, f"{name}_project")
        ledger.fixed(project)
    y = _bn(y, f"{name}_project_BN")
    if stride == 1 and inplanes == filters:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y, out


# ---------------------------------------------------------------- networks


def host_network(
    features,
    default_name,
    *,
    msgc,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    name,
    heads=1,
    attention=False,
    dense_weights=None,
    mac_weight=0.0,
    granularity=1,
    implementation="auto",
):
    """A host (or, with `msgc=False`, its dense network) in the
    keras.applications conventions; MSGC hosts end in the `MACRegularizer`
    and are `MSGCModel`s."""
    conventions.check_arguments(pooling, include_top, classes)
    source = WEIGHTS.resolve(weights, include_top=include_top, classes=classes)
    if msgc:
        positive_int(heads, "heads", default_name)
    # How the host's convolutions are gated: not at all (the dense network)
    # or as MSGC layers with these arguments.
    gating = dict(
        msgc=msgc, heads=heads, attention=attention, granularity=granularity,
        implementation=implementation,
    )  # fmt: skip
    image, inputs = conventions.image_input(
        input_tensor, input_shape, REFERENCE_SIZE, 32, include_top
    )
    size = tuple(image.shape[1:3])
    if None in size:  # counted per 224x224 image, whatever the size it runs at
        size = (REFERENCE_SIZE, REFERENCE_SIZE)
    ledger = _Ledger()
    x, size = features(image, size, ledger, gating)
    channels = x.shape[-1]
    if include_top:
        ledger.fixed(channels * (_area(size) + classes))
    elif pooling is not None:
        ledger.fixed(channels * _area(size))
    outputs = conventions.head(x, include_top, pooling, classes, classifier_activation)
    name = name or default_name
    if not msgc:
        model = TracedModel(inputs, outputs, name=name)
    else:
        outputs = MACRegularizer(
            ledger.dense, ledger.static, ledger.convolutions, ledger.bonuses,
            weight=mac_weight, name="mac_regularizer",
        )([outputs, *ledger.gates])  # fmt: skip
        model = msgc_module.MSGCModel(inputs, outputs, name=name)
    if dense_weights is not None:
        _load_dense_weights(model, dense_weights)
    if source is not None:
        WEIGHTS.load(model, source)
    return model


def resnet_features(block, depths):
    def features(image, size, ledger, gating):
        x = _conv(image, 64, 7, 2, "stem_conv")
        size = _out(size, 7, 2)
        ledger.fixed(49 * 3 * 64 * _area(size) + 64 * _area(size))
        x = _relu(_bn(x, "stem_bn"), "stem_relu")
        # Zero padding is PyTorch's -inf padding here: the input is a ReLU's.
        x, padding = _pad(x, 3, 2, "stem_pool")
        x = keras.layers.MaxPooling2D(3, 2, padding=padding, name="stem_pool")(x)
        size = _out(size, 3, 2)
        ledger.fixed(4 * 64 * _area(size))  # the release's count for the pool
        for stage, (planes, blocks) in enumerate(
            zip((64, 128, 256, 512), depths, strict=True)
        ):
            for b in range(blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                x, size = block(
                    x, planes, stride, size, ledger, gating, f"stage{stage + 1}_{b + 1}"
                )
        return x, size

    return features


_MOBILENET_V2 = [  # expansion t, channels c, repeats n, stride s (ImageNet)
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]  # fmt: skip


def _make_divisible(value, divisor=8):
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _mobilenet_v2(alpha):
    def features(image, size, ledger, gating):
        width = _make_divisible(32 * alpha)
        x = _conv(image, width, 3, 2, "Conv1")
        size = _out(size, 3, 2)
        ledger.fixed(3 * width * 9 * _area(size) + width * _area(size))
        x = _relu(_bn(x, "bn_Conv1"), "Conv1_relu", 6.0)
        index = 0
        for t, c, n, s in _MOBILENET_V2:
            for i in range(n):
                name = "expanded_conv" if index == 0 else f"block_{index}"
                x, size = _inverted_residual(
                    x, _make_divisible(c * alpha), s if i == 0 else 1, t, size,
                    ledger, gating, name,
                )  # fmt: skip
                index += 1
        last = _make_divisible(1280 * max(1.0, alpha))
        ledger.fixed(_area(size) * x.shape[-1] * last + last * _area(size))
        x = _relu(_bn(_conv(x, last, 1, 1, "Conv_1"), "Conv_1_bn"), "out_relu", 6.0)
        return x, size

    return features


# ---------------------------------------------------------------- weights


# The weights the hosts take besides Keras files: the MSGC authors' release
# checkpoints and torchvision's state_dicts (`.pth`, every key).
WEIGHTS = Sources("the MSGC hosts", (pytorch.FORMAT,))


def _load_dense_weights(model, source):
    """Dense weights into a host: the generators keep their initialisation."""
    if isinstance(source, str | os.PathLike) and os.fspath(source).endswith(".keras"):
        source = load_keras_model(source)
    if isinstance(source, keras.Model):
        msgc_module.copy_weights_by_name(source, model, require_all=True)
        return
    if isinstance(source, dict) or pytorch.is_torch_file(source):
        pytorch.load_torch_weights(model, source, dense=True)
        return
    raise ValueError(
        f"`dense_weights` takes a torchvision state_dict (a dict, or a .pth / "
        f".pth.tar file), a dense keras.Model with the host's layer names, or a "
        f".keras file of one. Received: dense_weights={source!r}."
    )


# ---------------------------------------------------------------- builders

_HOST_DOC = """{title}

Args:
    include_top, input_tensor, input_shape, pooling, classes,
        classifier_activation, name: as for `keras.applications` builders.
    weights: `None`, a Keras weights file of this host, or a checkpoint of
        the MSGC release (`.pth`/`.pth.tar`: a state_dict, `{{"state_dict":
        ...}}`, `module.` prefixes allowed; needs PyTorch to read).
    heads: groups of the MSGC convolutions (the release: 4).
    attention: add the attention generators ({attention}).
    dense_weights: start from a dense network: a torchvision state_dict
        ({torchvision}) as a dict or `.pth` file, or a dense `keras.Model`
        ({dense}) or `.keras` file of one. The generators keep their
        initialisation (gates open), as in the release.
    mac_weight: the MAC loss weight lambda (the release: 30).
    granularity: channels per gate: `1` (the release's free gating), or `g`
        for gates that open or close contiguous blocks of `g` channels
        (gathered whole at inference; `MSGCConv2D`, docs/msgc.md).
    implementation: the MSGC layers' inference form (`MSGCConv2D`):
        `"auto"` (default) skips the channels the gates close where that is
        faster, `"masked"` always convolves masked copies, `"gather"` always
        skips (not on JAX). Same outputs; training is always masked.
{extra}
Returns:
    A `keras_igc.msgc.MSGCModel`.

Example:

>>> from keras_igc import applications
>>> model = applications.{builder}(input_shape=(64, 64, 3), classes=10)
>>> model.get_layer("mac_regularizer").dense_macs > 0
True
"""


@register("imagenet", family="msgc", rows={"MSGC-ResNet18": {}}, msgc_host=True)
def MSGCResNet18(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="msgc_resnet18",
    heads=4,
    attention=False,
    dense_weights=None,
    mac_weight=30.0,
    granularity=1,
    implementation="auto",
):
    return host_network(
        resnet_features(_basic_block, (2, 2, 2, 2)),
        "msgc_resnet18",
        msgc=True,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        heads=heads,
        attention=attention,
        dense_weights=dense_weights,
        mac_weight=mac_weight,
        granularity=granularity,
        implementation=implementation,
    )


@register("imagenet", family="msgc", rows={"MSGC-ResNet50": {}}, msgc_host=True)
def MSGCResNet50(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="msgc_resnet50",
    heads=4,
    attention=False,
    dense_weights=None,
    mac_weight=30.0,
    granularity=1,
    implementation="auto",
):
    return host_network(
        resnet_features(bottleneck, (3, 4, 6, 3)),
        "msgc_resnet50",
        msgc=True,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        heads=heads,
        attention=attention,
        dense_weights=dense_weights,
        mac_weight=mac_weight,
        granularity=granularity,
        implementation=implementation,
    )


@register("imagenet", family="msgc", rows={"MSGC-MobileNetV2": {}}, msgc_host=True)
def MSGCMobileNetV2(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="msgc_mobilenetv2",
    heads=4,
    attention=False,
    alpha=1.0,
    dense_weights=None,
    mac_weight=30.0,
    granularity=1,
    implementation="auto",
):
    return host_network(
        _mobilenet_v2(alpha),
        "msgc_mobilenetv2",
        msgc=True,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        heads=heads,
        attention=attention,
        dense_weights=dense_weights,
        mac_weight=mac_weight,
        granularity=granularity,
        implementation=implementation,
    )


MSGCResNet18.__doc__ = _HOST_DOC.format(
    title="ResNet-18 with MSGC basic blocks, as the MSGC release builds it.",
    attention="on both convolutions of each block",
    torchvision="`resnet18-f37072fd.pth`",
    dense="`applications.ResNet18`",
    extra="",
    builder="MSGCResNet18",
)
MSGCResNet50.__doc__ = _HOST_DOC.format(
    title="ResNet-50 (v1.5) with MSGC bottlenecks, as the MSGC release builds it.",
    attention="on the 3x3 convolutions",
    torchvision="`resnet50-0676ba61.pth`",
    dense="`applications.ResNet50`",
    extra="",
    builder="MSGCResNet50",
)
MSGCMobileNetV2.__doc__ = _HOST_DOC.format(
    title="MobileNetV2 with MSGC projections, as the MSGC release builds it.",
    attention="on the projections",
    torchvision="`mobilenet_v2-b0353104.pth`",
    dense="`keras.applications.MobileNetV2`: its layer names",
    extra="    alpha: the width multiplier.\n",
    builder="MSGCMobileNetV2",
)

"""MSGC host networks: ResNet-18, ResNet-50 and MobileNetV2 with learned groups.

Each host is its dense network rewritten by `keras_igc.msgc.convert`, so it
starts from the dense weights (the published recipe fine-tunes from them):

- ResNet basic blocks: the first 3x3 convolution gets a per-sample mask on
  its input channels (`heads=1`), the second is a 4-head MSGC convolution;
- ResNet bottlenecks: masks on the inputs of the two 1x1 convolutions, the
  3x3 a 4-head MSGC convolution (generators squeeze 8x);
- MobileNetV2: the final 1x1 projection of each inverted residual block is a
  4-head MSGC convolution with attention, its masks computed from the block
  input; hidden channels that no head reads also save their expansion and
  depthwise work (`upstream_macs`).

Stems, shortcuts and classifiers stay dense. The model's last layer is the
`MACRegularizer` (it adds the MAC loss on the way out); reach the classifier
with `model.get_layer("predictions")`, e.g. to replace it for transfer
learning. `ResNet50` here is the dense
v1.5 network (stride in the 3x3 convolution, 4.1 GMACs) with the layer names
of `keras.applications.ResNet50`, so weights copy by name from it.
"""

import re

import keras

from keras_igc import msgc
from keras_igc.applications import conventions, imagenet
from keras_igc.validation import positive_int

HOSTS = ("MSGCResNet18", "MSGCResNet50", "MSGCMobileNetV2")


def ResNet50(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet50_v1_5",
):
    """Dense ResNet-50 v1.5 with `keras.applications.ResNet50`'s layer names.

    Same weights as Keras' ResNet50 (v1); the stride of each stage's first
    block sits in its 3x3 convolution instead of its first 1x1, as in the
    MSGC paper's baseline (4.1 G multiply-accumulates at 224x224).
    """

    def features(image):
        x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(image)
        x = keras.layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
        x = _bn(x, "conv1_bn")
        x = keras.layers.Activation("relu", name="conv1_relu")(x)
        x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
        for stage, (filters, blocks) in enumerate(
            [(64, 3), (128, 4), (256, 6), (512, 3)], start=2
        ):
            for block in range(1, blocks + 1):
                strides = 2 if block == 1 and stage > 2 else 1
                x = _bottleneck(
                    x, filters, strides, block == 1, f"conv{stage}_block{block}"
                )
        return x

    return conventions.build(
        features, 224, 32, **conventions.application_args(locals())
    )


def _bn(x, name):
    return keras.layers.BatchNormalization(epsilon=1.001e-5, name=name)(x)


def _bottleneck(x, filters, strides, project, name):
    shortcut = x
    if project:
        shortcut = keras.layers.Conv2D(
            4 * filters, 1, strides=strides, name=f"{name}_0_conv"
        )(x)
        shortcut = _bn(shortcut, f"{name}_0_bn")
    x = keras.layers.Conv2D(filters, 1, name=f"{name}_1_conv")(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(_bn(x, f"{name}_1_bn"))
    x = keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", name=f"{name}_2_conv"
    )(x)
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(_bn(x, f"{name}_2_bn"))
    x = keras.layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, _bn(x, f"{name}_3_bn")])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def _resnet_rules(heads, attention, squeeze):
    def rules(layer):
        # ResNet-18: stage{s}_{b}_{1,2}_conv; ResNet-50: conv{s}_block{b}_{1,2,3}_conv
        match = re.fullmatch(r"(stage\d+_\d+|conv\d_block\d+)_([123])_conv", layer.name)
        if match is None:
            return None
        grouped = match.group(2) == "2"
        return {
            "heads": heads if grouped else 1,
            "squeeze": squeeze,
            "attention": attention and grouped,
        }

    return rules


def _mobilenet_rules(model, heads, attention):
    """Projections of the inverted residual blocks, masked from the block input."""

    def rules(layer):
        match = re.fullmatch(r"(block_\d+|expanded_conv)_project", layer.name)
        if match is None:
            return None
        block = match.group(1)
        first = f"{block}_expand" if block != "expanded_conv" else f"{block}_depthwise"
        depthwise = model.get_layer(f"{block}_depthwise")
        # Work per hidden channel that no head reading it would save: its
        # 1x1 expansion and its depthwise filter.
        upstream = 9 * _positions(depthwise)
        if block != "expanded_conv":
            expand = model.get_layer(first)
            upstream += expand.kernel.shape[2] * _positions(expand)
        return {
            "heads": heads,
            "attention": attention,
            "source": first,
            "upstream_macs": upstream,
        }

    return rules


def _positions(layer):
    height, width = layer.output.shape[1:3]
    return height * width


def _host(dense, rules, weights, dense_weights, mac_weight, name, reference=None):
    """Load `dense_weights` into the dense network, convert it, load `weights`."""
    if dense_weights is not None:
        source = (
            keras.saving.load_model(dense_weights)
            if isinstance(dense_weights, str) and dense_weights.endswith(".keras")
            else dense_weights
        )
        if isinstance(source, keras.Model):
            msgc.copy_weights_by_name(source, dense)
        else:
            dense.load_weights(source)
    model = msgc.convert(
        dense, rules, weight=mac_weight, name=name, reference=reference
    )
    if weights is not None:
        model.load_weights(weights)
    return model


def _resnet_host(dense_builder, squeeze, args, owner):
    """The generic ResNet host: the dense network, masked by `_resnet_rules`."""
    positive_int(args["heads"], "heads", owner)
    conventions.check_arguments(
        args["weights"], args["pooling"], args["include_top"], args["classes"]
    )
    application_args = conventions.application_args(args)
    dense = dense_builder(**{**application_args, "weights": None, "name": None})
    reference = _reference(
        dense,
        lambda shape: dense_builder(
            **{
                **application_args,
                "weights": None,
                "name": None,
                "input_tensor": None,
                "input_shape": shape,
            }
        ),
    )
    rules = _resnet_rules(args["heads"], args["attention"], squeeze)
    return _host(
        dense,
        rules,
        args["weights"],
        args["dense_weights"],
        args["mac_weight"],
        args["name"],
        reference,
    )


REFERENCE_SIZE = 224  # the MSGC paper counts MACs per 224x224 image


def _reference(dense, build):
    """`dense` itself, or, if its input size is unknown, `build(input_shape)`:
    the same network on 224x224 images, to count MACs with."""
    if None not in dense.input_shape[1:3]:
        return dense
    return build((REFERENCE_SIZE, REFERENCE_SIZE, dense.input_shape[-1]))


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
):
    """ResNet-18 with MSGC basic blocks (see the module docstring).

    Args (beyond the keras.applications ones; `weights` is an MSGC weights
    file):
        heads: groups of the MSGC convolutions.
        attention: add the attention generators.
        dense_weights: initialise from a dense ResNet-18: a `keras.Model`
            with the same layer names (`applications.ResNet18`), a `.keras`
            file of one, or a `.weights.h5` file of `applications.ResNet18`.
        mac_weight: the MAC loss weight lambda.
    """
    return _resnet_host(imagenet.ResNet18, 4, locals(), "MSGCResNet18")


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
):
    """ResNet-50 (v1.5) with MSGC bottlenecks (see the module docstring).

    `dense_weights` may be `keras.applications.ResNet50(...)` itself (its
    layer names match), a `.keras` file of it, or a weights file of
    `applications.ResNet50`. Other arguments as for `MSGCResNet18`.
    """
    return _resnet_host(ResNet50, 8, locals(), "MSGCResNet50")


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
    attention=True,
    alpha=1.0,
    dense_weights=None,
    mac_weight=30.0,
):
    """MobileNetV2 with MSGC projections (see the module docstring).

    Built on `keras.applications.MobileNetV2(alpha=alpha)`; `dense_weights`
    may be such a model (e.g. loaded with ImageNet weights where they can be
    downloaded) or a `.keras` file of one. Other arguments as for
    `MSGCResNet18`.
    """
    positive_int(heads, "heads", "MSGCMobileNetV2")
    conventions.check_channels_last()
    conventions.check_arguments(weights, pooling, include_top, classes)

    def mobilenet(**kwargs):
        return keras.applications.MobileNetV2(
            alpha=alpha,
            include_top=include_top,
            weights=None,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            **kwargs,
        )

    dense = mobilenet(input_shape=input_shape, input_tensor=input_tensor)
    reference = _reference(dense, lambda shape: mobilenet(input_shape=shape))
    rules = _mobilenet_rules(reference, heads, attention)
    return _host(dense, rules, weights, dense_weights, mac_weight, name, reference)


def get_host(name, **kwargs):
    """An MSGC host by name: one of `HOSTS`."""
    if name not in HOSTS:
        raise ValueError(f"Unknown MSGC host {name!r}. Choose one of {list(HOSTS)}.")
    return globals()[name](**kwargs)

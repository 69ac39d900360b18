"""The dense ResNet baselines of both papers.

- `ResNet18`: the IGC paper's ImageNet baseline (Zhang et al., ICCV 2017,
  ImageNet table), built as the IGC release (MXNet) builds it, at width 64 or 69.
- `ResNet50`: torchvision's ResNet-50 v1.5, the dense network the MSGC
  release starts from, with the MSGC host's layer names
  (`MSGCResNet50(dense_weights=ResNet50(...))`).
"""

from keras_igc.applications.conv_families import RegularConvs
from keras_igc.applications.imagenet import IMAGENET_DOC, imagenet_network
from keras_igc.applications.msgc_hosts import bottleneck, host_network, resnet_features
from keras_igc.applications.registry import register


@register(
    "imagenet", rows={"ResNet-18-C64": {"width": 64}, "ResNet-18-C69": {"width": 69}}
)
def ResNet18(
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    width=64,
):
    return imagenet_network(
        RegularConvs(),
        width,
        (width, 2 * width, 4 * width, 8 * width),
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name or f"resnet18_c{width}",
    )


ResNet18.__doc__ = IMAGENET_DOC.format(
    title="ResNet-18, the IGC paper's ImageNet baseline.",
    description="Basic blocks with dense 3x3 convolutions; stages C/2C/4C/8C "
    "(C = 64, or 69 for the wider baseline).",
    extra="    width: C, the stem and stage-1 width (64 or 69 in the paper).\n",
)


@register("imagenet", family="msgc")
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
    """torchvision's dense ResNet-50 (v1.5: the stride in the 3x3) in Keras.

    The MSGC-ResNet-50 baseline (4.1 G multiply-accumulates at 224x224), with
    the host's layer names: `MSGCResNet50(dense_weights=ResNet50(...))` starts
    from it. `weights` may be a Keras weights file or torchvision's
    `resnet50-0676ba61.pth` (needs PyTorch to read). Arguments as for
    `keras.applications.ResNet50`.
    """
    return host_network(
        resnet_features(bottleneck, (3, 4, 6, 3)),
        "resnet50_v1_5",
        msgc=False,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )

import keras

from keras_igc.hub.application_backbone import ApplicationBackbone


@keras.saving.register_keras_serializable(package="keras_igc")
class IGCBackbone(ApplicationBackbone):
    """An IGC network (or its baseline) of `keras_igc.applications` as a
    keras-hub `FeaturePyramidBackbone`.

    The network is the application's without its head (`include_top=False`):
    the same layers, names and weights, so a Keras weights file or a release
    checkpoint of the application loads into it (see
    `keras_igc.hub.convert_to_preset`). Its output is the last stage's
    un-pooled feature map; `pyramid_outputs` holds every stage's: "P2".."P5"
    for the ImageNet networks (strides 4 to 32), "P0".."P2" for the CIFAR ones
    (strides 1 to 4).

    Args:
        architecture: a registered IGC name of
            `keras_igc.applications.list_models(family="igc", builders=True)`:
            a paper row ("IGC-L100M2+Ident.", "IGC-L24M2+Ident.",
            "ResNet-18-C64") or a builder ("IGCNetL4M32", "IGCNet38",
            "igc_cifar_network").
        image_shape: `(height, width, channels)`; `None` for any size.
        dtype: the layers' dtype policy (e.g. `"bfloat16"`).
        **kwargs: the builder's own arguments (`depth`, `implementation`,
            `width`, ...; see the builder), then `name` and `trainable`.

    Example:

    >>> import numpy as np
    >>> from keras_igc.hub import IGCBackbone
    >>> backbone = IGCBackbone("IGC-L24M2+Ident.", depth=8)
    >>> features = backbone(np.zeros((1, 32, 32, 3)))
    >>> tuple(features.shape), sorted(backbone.pyramid_outputs)
    ((1, 8, 8, 192), ['P0', 'P1', 'P2'])
    """

    family = "igc"

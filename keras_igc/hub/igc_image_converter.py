import keras

from keras_igc.hub.igc_backbone import IGCBackbone
from keras_igc.hub.normalized_image_converter import NormalizedImageConverter


@keras.saving.register_keras_serializable(package="keras_igc")
class IGCImageConverter(NormalizedImageConverter):
    """Resizes images and normalises them for an `IGCBackbone`.

    Args:
        image_size: `(height, width)` to resize to (224x224 for the ImageNet
            networks, 32x32 for the CIFAR ones), or None to keep the size.
        normalization: the per-channel statistics of
            `keras_igc.statistics.NORMALIZATIONS` the weights expect, for
            images in 0-255: `"igc-release"` (the IGC release's ImageNet
            statistics, the default), `"cifar10"`, `"cifar100"`, `"svhn"`,
            `"torch"`; None to pass `scale` and `offset` yourself.
        **kwargs: keras-hub `ImageConverter` arguments (`crop_to_aspect_ratio`,
            `interpolation`, ...).

    Example:

    >>> import numpy as np
    >>> from keras_igc.hub import IGCImageConverter
    >>> converter = IGCImageConverter(image_size=(32, 32), normalization="cifar10")
    >>> tuple(converter(np.full((1, 64, 64, 3), 255.0)).shape)
    (1, 32, 32, 3)
    """

    backbone_cls = IGCBackbone
    default_normalization = "igc-release"

import keras

from keras_igc.hub.msgc_backbone import MSGCBackbone
from keras_igc.hub.normalized_image_converter import NormalizedImageConverter


@keras.saving.register_keras_serializable(package="keras_igc")
class MSGCImageConverter(NormalizedImageConverter):
    """Resizes images and normalises them for an `MSGCBackbone`: torchvision's
    ImageNet statistics, as the MSGC release and torchvision's weights expect.

    Args:
        image_size: `(height, width)` to resize to (224x224 for the release's
            weights), or None to keep the size.
        normalization: a `keras_igc.statistics.NORMALIZATIONS` name for
            images in 0-255 (default `"torch"`), or None to pass `scale` and
            `offset` yourself.
        **kwargs: keras-hub `ImageConverter` arguments.

    Example:

    >>> import numpy as np
    >>> from keras_igc.hub import MSGCImageConverter
    >>> converter = MSGCImageConverter(image_size=(224, 224))
    >>> tuple(converter(np.zeros((2, 256, 320, 3))).shape)
    (2, 224, 224, 3)
    """

    backbone_cls = MSGCBackbone
    default_normalization = "torch"

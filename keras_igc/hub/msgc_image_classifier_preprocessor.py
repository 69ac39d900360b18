import keras
from keras_hub.models import ImageClassifierPreprocessor

from keras_igc.hub.msgc_backbone import MSGCBackbone
from keras_igc.hub.msgc_image_converter import MSGCImageConverter


@keras.saving.register_keras_serializable(package="keras_igc")
class MSGCImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """keras-hub's image classification preprocessing with a
    `MSGCImageConverter` (resizing and the weights' normalisation): what
    `MSGCImageClassifier.from_preset` attaches.

    Example:

    >>> import numpy as np
    >>> from keras_igc.hub import MSGCImageClassifierPreprocessor, MSGCImageConverter
    >>> preprocessor = MSGCImageClassifierPreprocessor(
    ...     MSGCImageConverter(image_size=(64, 64))
    ... )
    >>> tuple(preprocessor(np.zeros((1, 80, 80, 3))).shape)
    (1, 64, 64, 3)
    """

    backbone_cls = MSGCBackbone
    image_converter_cls = MSGCImageConverter

import keras
from keras_hub.models import ImageClassifierPreprocessor

from keras_igc.hub.igc_backbone import IGCBackbone
from keras_igc.hub.igc_image_converter import IGCImageConverter


@keras.saving.register_keras_serializable(package="keras_igc")
class IGCImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """keras-hub's image classification preprocessing with a
    `IGCImageConverter` (resizing and the weights' normalisation): what
    `IGCImageClassifier.from_preset` attaches.

    Example:

    >>> import numpy as np
    >>> from keras_igc.hub import IGCImageClassifierPreprocessor, IGCImageConverter
    >>> preprocessor = IGCImageClassifierPreprocessor(
    ...     IGCImageConverter(image_size=(64, 64))
    ... )
    >>> tuple(preprocessor(np.zeros((1, 80, 80, 3))).shape)
    (1, 64, 64, 3)
    """

    backbone_cls = IGCBackbone
    image_converter_cls = IGCImageConverter

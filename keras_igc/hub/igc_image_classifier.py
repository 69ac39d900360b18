import keras
from keras_hub.models import ImageClassifier

from keras_igc.hub.igc_backbone import IGCBackbone
from keras_igc.hub.igc_image_classifier_preprocessor import (
    IGCImageClassifierPreprocessor,
)


@keras.saving.register_keras_serializable(package="keras_igc")
class IGCImageClassifier(ImageClassifier):
    """keras-hub's `ImageClassifier` on an `IGCBackbone`: pooling, dropout and
    a dense `"predictions"` layer (logits unless `activation` says otherwise).

    `keras_igc.hub.convert_to_preset` writes a preset of one from a release
    checkpoint; `IGCImageClassifier.from_preset(dir)` (or keras-hub's
    `ImageClassifier.from_preset(dir)` once `keras_igc.hub` is imported)
    rebuilds it with its preprocessor.

    Example:

    >>> import numpy as np
    >>> from keras_igc.hub import IGCBackbone, IGCImageClassifier
    >>> classifier = IGCImageClassifier(
    ...     IGCBackbone("IGC-L24M2+Ident.", depth=8), num_classes=10
    ... )
    >>> tuple(classifier.predict(np.zeros((2, 32, 32, 3)), verbose=0).shape)
    (2, 10)
    """

    backbone_cls = IGCBackbone
    preprocessor_cls = IGCImageClassifierPreprocessor

import keras
from keras_hub.models import ImageClassifier

from keras_igc.hub.msgc_backbone import MSGCBackbone
from keras_igc.hub.msgc_image_classifier_preprocessor import (
    MSGCImageClassifierPreprocessor,
)
from keras_igc.msgc import MACMetrics


@keras.saving.register_keras_serializable(package="keras_igc")
class MSGCImageClassifier(MACMetrics, ImageClassifier):
    """keras-hub's `ImageClassifier` on an `MSGCBackbone`, reporting the MACs.

    The backbone adds the MAC loss; `fit` and `evaluate` log the metrics
    `macs` (millions per image, the batch's) and `mac_ratio` (to the dense
    backbone). `keras_igc.msgc.compile_for_msgc(classifier, ...)` compiles the
    release's recipe, and `keras_igc.msgc.MACTargetScheduler` moves the
    target, as for the applications.

    Example:

    >>> import numpy as np
    >>> from keras_igc.hub import MSGCBackbone, MSGCImageClassifier
    >>> classifier = MSGCImageClassifier(MSGCBackbone("MSGC-ResNet18"), num_classes=3)
    >>> classifier.compile()
    >>> logs = classifier.evaluate(
    ...     np.zeros((2, 64, 64, 3)), np.array([0, 2]), verbose=0, return_dict=True
    ... )
    >>> sorted(logs)
    ['loss', 'mac_ratio', 'macs', 'sparse_categorical_accuracy']
    """

    backbone_cls = MSGCBackbone
    preprocessor_cls = MSGCImageClassifierPreprocessor

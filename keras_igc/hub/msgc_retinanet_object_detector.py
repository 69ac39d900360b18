import keras
from keras_hub.models import RetinaNetObjectDetector

from keras_igc.msgc import MACMetrics


@keras.saving.register_keras_serializable(package="keras_igc")
class MSGCRetinaNetObjectDetector(MACMetrics, RetinaNetObjectDetector):
    """keras-hub's `RetinaNetObjectDetector` that reports its MSGC encoder's
    MACs.

    Build it as keras-hub's detector, on a `keras_hub.models.RetinaNetBackbone`
    whose `image_encoder` is an `MSGCBackbone`: the encoder adds the MAC loss
    (its pyramid's "P5" is the `MACRegularizer`'s output) and `fit` logs
    `macs` and `mac_ratio` beside the box and class losses. The MACs are the
    encoder's; the feature pyramid and the heads are not counted. (keras-hub's
    own detector trains the same network and loss; it only logs no MACs.)

    Example:

    >>> import keras_hub
    >>> from keras_igc.hub import MSGCBackbone, MSGCRetinaNetObjectDetector
    >>> backbone = keras_hub.models.RetinaNetBackbone(
    ...     image_encoder=MSGCBackbone("MSGC-ResNet18"),
    ...     min_level=3, max_level=5, image_shape=(64, 64, 3), use_p5=True,
    ... )
    >>> detector = MSGCRetinaNetObjectDetector(backbone, num_classes=2)
    >>> sorted(detector.output)
    ['bbox_regression', 'cls_logits']
    """

import keras

from keras_igc.applications import registry
from keras_igc.hub.application_backbone import ApplicationBackbone


@keras.saving.register_keras_serializable(package="keras_igc")
class MSGCBackbone(ApplicationBackbone):
    """An MSGC host of `keras_igc.applications` as a keras-hub
    `FeaturePyramidBackbone`.

    The host without its head (`include_top=False`): torchvision's ResNet-18,
    ResNet-50 (v1.5) or MobileNetV2 with the MSGC release's masked
    convolutions, the same layers and weight layout as the application, so the
    release's `.pth` checkpoints and torchvision's dense weights load (see
    `keras_igc.hub.convert_to_preset`). The output goes through the host's
    `MACRegularizer`: any model built on the backbone, or on its "P5" (the
    pyramid's top level is that output), adds the MAC loss, and an MSGC task
    (`MSGCImageClassifier`, `MSGCRetinaNetObjectDetector`) reports the
    metrics `macs` and `mac_ratio`. The MACs are counted without a
    classifier: the dense reference is the backbone's.

    Args:
        architecture: "MSGC-ResNet18", "MSGC-ResNet50" or "MSGC-MobileNetV2"
            (or the builder names, "MSGCResNet18", ...).
        image_shape: `(height, width, channels)`; `None` for any size.
        dtype: the layers' dtype policy.
        **kwargs: the host's own arguments: `heads` (4), `attention`
            (False), `mac_weight` (30), `granularity` (1), `alpha`
            (MobileNetV2), then `name` and `trainable`.

    Example:

    >>> import numpy as np
    >>> from keras_igc.hub import MSGCBackbone
    >>> backbone = MSGCBackbone("MSGC-ResNet18", attention=True)
    >>> features = backbone(np.zeros((1, 64, 64, 3)))
    >>> tuple(features.shape), sorted(backbone.pyramid_outputs)
    ((1, 2, 2, 512), ['P2', 'P3', 'P4', 'P5'])
    """

    family = "msgc"

    @classmethod
    def allowed(cls, entry):
        return registry.msgc_host(entry.name) is not None

    @property
    def mac_regularizer(self):
        """The host's `MACRegularizer` (its `tau`, `dense_macs`, `weight`)."""
        return self.get_layer("mac_regularizer")

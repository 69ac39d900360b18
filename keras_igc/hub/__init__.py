"""keras_igc's networks in keras-hub: backbones, tasks, presets, detection.

Needs keras-hub (`pip install "keras-igc[hub]"`, keras-hub >= 0.32, Python
>= 3.11); `import keras_igc` works without it. Importing this module
registers the classes, so keras-hub's `from_preset` finds them.

- Backbones (`FeaturePyramidBackbone`): `IGCBackbone` (the IGC networks and
  their baselines, ImageNet and CIFAR) and `MSGCBackbone` (the MSGC hosts,
  with their MAC loss).
- Classification: `IGCImageClassifier` and `MSGCImageClassifier`, their
  preprocessors and image converters (each release's normalisation).
- Presets: `convert_to_preset(checkpoint, dir)` (or `keras-igc convert
  CHECKPOINT --preset DIR`) from an authors' checkpoint.
- Detection: either backbone as the `image_encoder` of keras-hub's
  `RetinaNetBackbone`; `MSGCRetinaNetObjectDetector` logs the MACs.
"""

import importlib.metadata

MINIMUM_KERAS_HUB = "0.32"

try:
    _version = importlib.metadata.version("keras-hub")
except importlib.metadata.PackageNotFoundError:
    raise ImportError(
        "keras_igc.hub needs keras-hub >= 0.32 (Python >= 3.11), which is not "
        'installed. Install it with: pip install "keras-igc[hub]".'
    ) from None
from packaging.version import Version  # noqa: E402 (keras-hub installs it)

if Version(_version) < Version(MINIMUM_KERAS_HUB):
    raise ImportError(
        f"keras_igc.hub needs keras-hub >= {MINIMUM_KERAS_HUB}; found {_version}. "
        'Upgrade with: pip install -U "keras-igc[hub]".'
    )

from keras_igc.hub.igc_backbone import IGCBackbone  # noqa: E402
from keras_igc.hub.igc_image_classifier import IGCImageClassifier  # noqa: E402
from keras_igc.hub.igc_image_classifier_preprocessor import (  # noqa: E402
    IGCImageClassifierPreprocessor,
)
from keras_igc.hub.igc_image_converter import IGCImageConverter  # noqa: E402
from keras_igc.hub.msgc_backbone import MSGCBackbone  # noqa: E402
from keras_igc.hub.msgc_image_classifier import MSGCImageClassifier  # noqa: E402
from keras_igc.hub.msgc_image_classifier_preprocessor import (  # noqa: E402
    MSGCImageClassifierPreprocessor,
)
from keras_igc.hub.msgc_image_converter import MSGCImageConverter  # noqa: E402
from keras_igc.hub.msgc_retinanet_object_detector import (  # noqa: E402
    MSGCRetinaNetObjectDetector,
)
from keras_igc.hub.presets import convert_to_preset  # noqa: E402

__all__ = [
    "IGCBackbone",
    "IGCImageClassifier",
    "IGCImageClassifierPreprocessor",
    "IGCImageConverter",
    "MSGCBackbone",
    "MSGCImageClassifier",
    "MSGCImageClassifierPreprocessor",
    "MSGCImageConverter",
    "MSGCRetinaNetObjectDetector",
    "convert_to_preset",
]

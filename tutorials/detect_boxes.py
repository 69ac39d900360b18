"""
Title: Object detection with IGC and MSGC backbones in keras-hub's RetinaNet
Author: keras-igc developers
Date created: 2026/11/29
Last modified: 2026/11/29
Description: IGC and MSGC networks as RetinaNet encoders, trained on generated boxes.
Accelerator: None
"""

"""
## Introduction

keras-hub's `RetinaNetBackbone` takes any `FeaturePyramidBackbone` as its
`image_encoder` and builds a feature pyramid network on the encoder's "P3".."P5".
`keras_igc.hub.IGCBackbone` and `keras_igc.hub.MSGCBackbone` are the applications'
networks in that form, so the IGC paper's ImageNet networks and the MSGC hosts drop
in. This tutorial trains both on a small data set generated here (coloured boxes on
black images: nothing to download), measures how well the IGC detector finds the
boxes, and shows that the MSGC detector trains with its MAC loss and logs its MACs.
It needs `pip install "keras-igc[hub]"`.
"""

"""
## Setup: boxes to find

Each 64x64 image holds one or two filled rectangles, 21 to 47 pixels a side (the
smallest RetinaNet anchors are 32 pixels); the channel a rectangle is drawn in is its
class (red 0, green 1). Boxes are `"yxyx"` pixel corners; images
with one box pad the second with label -1, keras-hub's "no box".
"""


import keras
import keras_hub
import numpy as np

from keras_igc import quick
from keras_igc.hub import IGCBackbone, MSGCBackbone, MSGCRetinaNetObjectDetector

# KERAS_IGC_QUICK=1 shortens both (keras_igc/quick.py): the tests run it so.
EPOCHS = quick.epochs(30)
IMAGES = quick.examples(128)
SIZE, CLASSES = 64, 2
keras.utils.set_random_seed(0)


def box_images(count, seed):
    rng = np.random.default_rng(seed)
    images = np.zeros((count, SIZE, SIZE, 3), "float32")
    boxes = np.zeros((count, 2, 4), "float32")
    labels = np.full((count, 2), -1, "int32")
    for i in range(count):
        for j in range(rng.integers(1, 3)):
            height, width = rng.integers(SIZE // 3, 3 * SIZE // 4, 2)
            top, left = rng.integers(0, SIZE - height), rng.integers(0, SIZE - width)
            label = rng.integers(0, CLASSES)
            images[i, top : top + height, left : left + width, label] = 1.0
            boxes[i, j] = (top, left, top + height, left + width)
            labels[i, j] = label
    return images, {"boxes": boxes, "labels": labels}


train_x, train_y = box_images(IMAGES, seed=0)
test_x, test_y = box_images(32, seed=1)

"""
## An IGC detector

The encoder is IGC-L100M2+Ident. (M = 2: each secondary partition mixes L channels),
as in the IGC paper's ImageNet table; its stages end at strides 4 to 32, keras-hub's
"P2".."P5". RetinaNet reads P3..P5 and adds P6 and P7 on top.
"""


def retinanet(encoder, detector_class=keras_hub.models.RetinaNetObjectDetector):
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=5,
        image_shape=(SIZE, SIZE, 3), use_p5=True,
    )  # fmt: skip
    detector = detector_class(
        backbone, num_classes=CLASSES, bounding_box_format="yxyx",
        pre_logits_num_conv_layers=2,
    )  # fmt: skip
    detector.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0))
    return detector


encoder = IGCBackbone("IGC-L100M2+Ident.", image_shape=(SIZE, SIZE, 3))
print({level: tuple(t.shape[1:]) for level, t in encoder.pyramid_outputs.items()})
detector = retinanet(encoder)
history = detector.fit(train_x, train_y, batch_size=16, epochs=EPOCHS, verbose=0)
for name in ("cls_logits_loss", "bbox_regression_loss"):
    print(name, "by epoch:", [round(v, 3) for v in history.history[name]])

"""
## How well it finds the boxes

For each box of a test image: the best intersection over union (IoU) among the
detections of its class. A box counts as found at IoU >= 0.5. keras-hub's decoder
keeps detections of confidence 0.5 or more; a detector trained this briefly on a
focal loss is less sure than that, so it keeps those of 0.2 or more here.

Trained from scratch for a few CPU minutes, the detector learns the classes well
before it learns where the boxes are (the box loss falls last), so expect few boxes
found here; detection in practice starts from an ImageNet-trained encoder (a preset,
below) and trains for hours on a GPU.
"""

detector.prediction_decoder = keras_hub.layers.NonMaxSuppression(
    bounding_box_format="yxyx", from_logits=True, confidence_threshold=0.2
)


def iou(a, b):
    top, left = np.maximum(a[:2], b[:2])
    bottom, right = np.minimum(a[2:], b[2:])
    inter = max(bottom - top, 0) * max(right - left, 0)
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def found_fraction(detector, x, y):
    predictions = detector.predict(x, verbose=0)
    best = []
    for i in range(len(x)):
        kept = np.arange(int(predictions["num_detections"][i]))
        for box, label in zip(y["boxes"][i], y["labels"][i], strict=True):
            if label < 0:
                continue
            same = [k for k in kept if predictions["labels"][i][k] == label]
            overlaps = [iou(box, predictions["boxes"][i][k]) for k in same]
            best.append(max(overlaps, default=0.0))
    best = np.array(best)
    return float(np.mean(best >= 0.5)), float(np.mean(best))


found, mean_iou = found_fraction(detector, test_x, test_y)
print(f"IGC-L100M2+Ident.: {found:.0%} of test boxes found, mean IoU {mean_iou:.2f}")

"""
## An MSGC detector that counts its MACs

`MSGCBackbone("MSGC-ResNet18")` (or "MSGC-ResNet50", "MSGC-MobileNetV2") ends in the
host's `MACRegularizer`, and its "P5" is that layer's output, so the MAC loss rides
along into the detector. `MSGCRetinaNetObjectDetector` is keras-hub's detector that
also logs `macs` (millions per image, at the input size) and `mac_ratio` (to the
dense ResNet-18).
Here the target `tau` is set to 0.6, so the MAC loss pushes the gates towards
closing (slowly at this learning rate: the release trains its mask generators at
0.075 with SGD, `keras_igc.msgc.compile_for_msgc`).
"""

encoder = MSGCBackbone("MSGC-ResNet18", image_shape=(SIZE, SIZE, 3))
encoder.mac_regularizer.tau.assign(0.6)
msgc_detector = retinanet(encoder, MSGCRetinaNetObjectDetector)
history = msgc_detector.fit(
    train_x, train_y, batch_size=16, epochs=max(1, EPOCHS // 3), verbose=0
)
print("MSGC mac_ratio by epoch:", [round(v, 3) for v in history.history["mac_ratio"]])

"""
## Save, reload, detect

Both detectors are ordinary Keras models: `.keras` files that load in a process
that has imported `keras_igc.hub`.
"""

path = "msgc_retinanet.keras"
msgc_detector.save(path)
reloaded = keras.saving.load_model(path)
boxes = reloaded.predict(test_x[:1], verbose=0)
print("detections in the first test image:", int(boxes["num_detections"][0]))

"""
## MS COCO

The MSGC paper also fine-tunes detectors on MS COCO with MSGC backbones and reports
observations similar to ImageNet's. Its release ships no detection code or
checkpoints, and no COCO figures were run here. Reproducing them would need COCO 2017
(about 19 GB of images with their annotations, e.g. TFDS `coco/2017`), ImageNet-trained
MSGC backbones (`keras-igc convert CHECKPOINT --preset DIR` turns the release's
`.pth` files into presets), and GPU training of the usual 1x schedule (about 90k
iterations at batch 16). The code path is the one above with `image_shape=(None,
None, 3)` and keras-hub's `RetinaNetObjectDetectorPreprocessor`.
"""

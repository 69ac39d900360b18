"""keras_igc's backbones under keras-hub's RetinaNet: an IGC ImageNet network
and MSGC-ResNet50 as the `image_encoder`, trained a few steps on boxes drawn
here, saved, reloaded, and asked for boxes."""

import keras
import numpy as np
import pytest
from harness import assert_close, require_keras_hub

require_keras_hub()

import keras_hub  # noqa: E402

from keras_igc.hub import IGCBackbone, MSGCBackbone, MSGCRetinaNetObjectDetector  # noqa: E402

SIZE, CLASSES = 64, 2


def box_images(count, seed=0):
    """Black images with one box each, filled in the colour channel of its
    class; boxes in "yxyx" pixels."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, SIZE, SIZE, 3), "float32")
    boxes = np.zeros((count, 1, 4), "float32")
    labels = np.zeros((count, 1), "int32")
    for i in range(count):
        height, width = rng.integers(SIZE // 4, SIZE // 2, 2)
        top, left = rng.integers(0, SIZE - height), rng.integers(0, SIZE - width)
        label = rng.integers(0, CLASSES)
        images[i, top : top + height, left : left + width, label] = 2.0
        boxes[i, 0] = (top, left, top + height, left + width)
        labels[i, 0] = label
    return images, {"boxes": boxes, "labels": labels}


def detector(encoder, detector_class, run_eagerly=False):
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=5,
        image_shape=(SIZE, SIZE, 3), use_p5=True,
    )  # fmt: skip
    model = detector_class(
        backbone, num_classes=CLASSES, bounding_box_format="yxyx",
        pre_logits_num_conv_layers=1,
    )  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, clipnorm=1.0),
        run_eagerly=run_eagerly,
    )
    return model


# MSGC-ResNet50 trains eagerly: TensorFlow takes 30 s on 2 cores to trace its 48
# masked convolutions into a graph, and 8 s to run the five steps eagerly (the
# graph path of MSGC training is test_hub_tasks.py's, on MSGC-ResNet18).
ENCODERS = {
    "IGC-L100M2+Ident.": lambda: (
        IGCBackbone("IGC-L100M2+Ident.", image_shape=(SIZE, SIZE, 3)),
        keras_hub.models.RetinaNetObjectDetector,
        False,
    ),
    "MSGC-ResNet50": lambda: (
        MSGCBackbone("MSGC-ResNet50", image_shape=(SIZE, SIZE, 3)),
        MSGCRetinaNetObjectDetector,
        True,
    ),
}


@pytest.mark.not_on_jax
@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_retinanet_trains_saves_reloads_and_detects(encoder, tmp_path):
    keras.utils.set_random_seed(0)
    model = detector(*ENCODERS[encoder]())
    x, y = box_images(8)
    # One batch, again and again: the loss falls as the detector fits it.
    history = model.fit(x, y, batch_size=8, epochs=5, verbose=0).history
    losses = history["loss"]
    assert np.mean(losses[-2:]) < 0.7 * losses[0], losses
    if encoder.startswith("MSGC"):
        ratio = np.array(history["mac_ratio"])
        assert np.all((ratio > 0) & (ratio <= 1))
        assert np.all(np.array(history["macs"]) > 0)

    path = tmp_path / "detector.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert type(loaded.backbone.image_encoder) is type(model.backbone.image_encoder)
    found = loaded.predict(x[:2], verbose=0)
    expected = model.predict(x[:2], verbose=0)
    for key in ("boxes", "confidence", "labels"):
        assert_close(np.asarray(found[key]), np.asarray(expected[key]), rel=1e-4)
    # Up to 100 boxes per image after non-maximum suppression (5 steps do not
    # make them good; tutorials/detect_boxes.py trains longer).
    assert np.asarray(found["boxes"]).shape == (2, 100, 4)
    assert np.asarray(found["num_detections"]).shape == (2,)

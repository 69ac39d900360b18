"""keras_igc.hub's classification: image converters with each release's
normalisation, preprocessors, and the IGC and MSGC image classifiers."""

import keras
import numpy as np
import pytest
from harness import assert_close, assert_round_trip, numpy, require_keras_hub

require_keras_hub()

from keras_igc import applications, msgc, statistics  # noqa: E402
from keras_igc.hub import (  # noqa: E402
    IGCBackbone,
    IGCImageClassifier,
    IGCImageClassifierPreprocessor,
    IGCImageConverter,
    MSGCBackbone,
    MSGCImageClassifier,
    MSGCImageConverter,
)
from keras_igc.hub.presets import classifier_from_application  # noqa: E402

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 255, (4, 32, 32, 3)).astype("float32")


@pytest.mark.parametrize(
    "converter, expected",
    [
        (IGCImageConverter(), applications.preprocess_input(IMAGES)),
        (
            MSGCImageConverter(),
            applications.preprocess_input(IMAGES, mode="torch"),
        ),
        (
            IGCImageConverter(normalization="cifar100"),
            applications.preprocess_cifar_input(IMAGES, *statistics.CIFAR100),
        ),
    ],
    ids=["igc-release", "torch", "cifar100"],
)
def test_converters_normalise_as_the_releases(converter, expected):
    assert_close(numpy(converter(IMAGES)), numpy(expected), rel=1e-4)
    restored = type(converter).from_config(converter.get_config())
    assert_close(numpy(restored(IMAGES)), numpy(expected), rel=1e-4)


def test_converter_resizes_and_takes_its_own_scale_without_a_normalization():
    converter = IGCImageConverter(
        image_size=(16, 16), normalization=None, scale=1 / 255, offset=0.0
    )
    out = numpy(converter(np.full((1, 40, 40, 3), 255.0)))
    assert out.shape == (1, 16, 16, 3)
    assert_close(out, 1.0, rel=1e-6)


def test_converter_errors_name_the_value_and_the_fix():
    with pytest.raises(ValueError, match="normalization.*one of.*'imagenet'"):
        IGCImageConverter(normalization="imagenet")
    with pytest.raises(ValueError, match="scale=0.5 contradicts.*normalization=None"):
        MSGCImageConverter(scale=0.5)


def test_igc_classifier_is_the_application_with_its_preprocessing(tmp_path):
    application = applications.IGCNet8(classes=10)
    classifier = classifier_from_application(
        application, "IGCNet8", normalization="cifar10", image_size=(32, 32)
    )
    assert isinstance(classifier, IGCImageClassifier)
    assert isinstance(classifier.preprocessor, IGCImageClassifierPreprocessor)
    # Logits (keras-hub's default), from images in 0-255 through the converter.
    expected = application(applications.preprocess_cifar_input(IMAGES))
    logits = classifier.predict(IMAGES, verbose=0)
    # Probabilities are bounded by 1: an absolute tolerance.
    np.testing.assert_allclose(
        numpy(keras.ops.softmax(logits)), numpy(expected), atol=1e-5
    )
    loaded = assert_round_trip(classifier, IMAGES / 255.0, tmp_path, rel=1e-6)
    assert isinstance(loaded.backbone, IGCBackbone)


@pytest.mark.not_on_jax
def test_msgc_classifier_trains_with_the_mac_loss_and_logs_the_macs():
    backbone = MSGCBackbone("MSGC-ResNet18", image_shape=(32, 32, 3))
    classifier = MSGCImageClassifier(backbone, num_classes=3)
    msgc.compile_for_msgc(classifier, steps_per_epoch=1, epochs=2)
    x, y = IMAGES / 64.0, np.array([0, 1, 2, 0])
    backbone.mac_regularizer.tau.assign(0.0)  # the MAC loss is on from the start
    history = classifier.fit(x, y, batch_size=4, epochs=2, verbose=0).history
    assert {"loss", "accuracy", "macs", "mac_ratio"} <= set(history)
    ratio = np.array(history["mac_ratio"])
    assert np.all((ratio > 0.1) & (ratio <= 1.0)), ratio
    # The loss holds weight * ratio (tau = 0) besides the cross-entropy.
    assert history["loss"][0] > backbone.mac_regularizer.weight * ratio[0]
    per_image = msgc.inference_macs(classifier, x)
    np.testing.assert_allclose(per_image, msgc.inference_macs(backbone, x))
    assert per_image.shape == (4,) and np.all(per_image > 0)

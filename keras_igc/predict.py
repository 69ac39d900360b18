"""Classify image files with a saved model, as `keras-igc predict` does."""

import os

import keras
import numpy as np

from keras_igc.validation import load_keras_model


def load_image(path, size, short_side=256):
    """An image file as a float32 RGB array: short side `short_side`, centre
    crop `size` x `size`, values 0-255 (the release's evaluation)."""
    import tensorflow as tf

    from keras_igc import data

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image file at {path!r}.")
    try:
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=3, expand_animations=False
        )
    except tf.errors.InvalidArgumentError:
        raise ValueError(
            f"{path!r} is not an image TensorFlow can read (JPEG, PNG, BMP, GIF)."
        ) from None
    return data.centre_crop(image, size, short_side).numpy()


def load_model(path):
    """A `.keras` model, or the network of a release checkpoint (`.params`)."""
    import keras_igc  # noqa: F401  (registers the layers)
    from keras_igc import applications

    if os.fspath(path).endswith(".params"):
        return applications.from_release_weights(path)
    return load_keras_model(path)


def classify(model, images, top=5, mode="igc-release"):
    """`[(image path, [(label, probability), ...]), ...]` for image files.

    Args:
        model: a model, or a path for `load_model`.
        images: image file paths.
        top: how many classes per image.
        mode: the normalisation, see `applications.preprocess_input`.
    """
    from keras_igc import applications

    if not isinstance(model, keras.Model):
        model = load_model(model)
    size = model.input_shape[1] or 224
    batch = np.stack([load_image(path, size) for path in images])
    scores = keras.ops.convert_to_numpy(
        model.predict(applications.preprocess_input(batch, mode), verbose=0)
    )
    if model.layers[-1].get_config().get("activation") not in ("softmax",):
        scores = keras.ops.convert_to_numpy(keras.ops.softmax(scores))
    names = applications.imagenet_class_names() if scores.shape[-1] == 1000 else None
    results = []
    for path, row in zip(images, scores, strict=True):
        best = np.argsort(row)[::-1][:top]
        labels = [names[i] if names else f"class {i}" for i in best]
        results.append(
            (
                path,
                [(label, float(row[i])) for label, i in zip(labels, best, strict=True)],
            )
        )
    return results

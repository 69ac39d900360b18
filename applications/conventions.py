"""The `keras.applications` conventions every IGC builder follows.

Input handling, argument validation, the classification head and weight
loading live here once, so each network file only describes its layers.
"""

import os

import keras

from keras_igc import keras_internals
from keras_igc.saving import check_keras_archive

POOLINGS = (None, "avg", "max")


def build(
    features,
    default_size,
    min_size,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
    name,
):
    """A keras.applications model: validated arguments, the input, the network's
    `features(image)`, the head, and the weights file if one is given."""
    check_arguments(weights, pooling, include_top, classes)
    image, inputs = image_input(
        input_tensor, input_shape, default_size, min_size, include_top
    )
    outputs = head(
        features(image), include_top, pooling, classes, classifier_activation
    )
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model, weights):
    """A Keras weights file, or a release checkpoint (`*.params`, MXNet)."""
    path = os.fspath(weights)
    if path.endswith(".params"):
        from keras_igc.applications.release_weights import load_release_weights

        return load_release_weights(model, weights)
    return load_keras_weights(model, path)


def load_keras_weights(model, path):
    """`model.load_weights(path)` with errors that name the file and the fix:
    a file that is no weights file, or the weights of another network."""
    import warnings

    with open(path, "rb") as f:
        head = f.read(8)
    if path.endswith(".h5") and head != b"\x89HDF\r\n\x1a\n":
        raise ValueError(
            f"{path!r} is not an HDF5 weights file (saved with "
            f"model.save_weights('name.weights.h5')); it starts with {head!r}."
        )
    if path.endswith(".keras"):
        check_keras_archive(path)
    try:
        with warnings.catch_warnings():
            # Keras warns per layer before it fails; the error below says it once.
            warnings.simplefilter("ignore")
            return model.load_weights(path)
    except ValueError as error:
        raise ValueError(
            f"The weights in {path!r} do not fit {model.name!r} (the file was "
            f"saved from another network, or with other classes, width or "
            f"input shape): {str(error).splitlines()[0][:200]}"
        ) from None


RELEASE_CHECKPOINTS = {
    ".params": "a checkpoint of the IGC authors' MXNet release ('*.params')",
    ".pth": "a checkpoint of the MSGC authors' PyTorch release or a torchvision "
    "state_dict ('*.pth', '*.pth.tar')",
}


def check_arguments(weights, pooling, include_top, classes, release=".params"):
    """Validate the builder arguments before any layer is created."""
    if weights is not None and not (
        isinstance(weights, str | os.PathLike) and os.path.isfile(weights)
    ):
        raise ValueError(
            "The `weights` argument should be either `None` (random "
            "initialization), the path to a weights file saved with "
            "`model.save_weights()` (e.g. 'model.weights.h5'), or the path of "
            f"{RELEASE_CHECKPOINTS[release]}. Nothing is downloaded. Received: "
            f"weights={weights!r}."
        )
    if pooling not in POOLINGS:
        raise ValueError(
            "The `pooling` argument should be one of None, 'avg' or 'max' (it "
            "applies when include_top=False). Received: "
            f"pooling={pooling!r}."
        )
    if include_top and (
        isinstance(classes, bool) or not isinstance(classes, int) or classes < 1
    ):
        raise ValueError(
            "With include_top=True, `classes` must be a positive integer (the "
            f"size of the classifier). Received: classes={classes!r}."
        )


def check_channels_last():
    """The networks are built channels_last; anything else is a clear error."""
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "The IGC networks are built channels_last. Received "
            f"keras.config.image_data_format()={keras.config.image_data_format()!r}; "
            "call keras.config.set_image_data_format('channels_last') first."
        )


def image_input(input_tensor, input_shape, default_size, min_size, include_top):
    """The model's input, following keras.applications.

    `input_shape` defaults to `(default_size, default_size, 3)` with the top and
    to `(None, None, 3)` without it; shapes smaller than `min_size` or not of
    rank 3 raise Keras' own errors.

    Returns:
        (image tensor to build on, inputs of the keras.Model).
    """
    check_channels_last()
    input_shape = keras_internals.obtain_input_shape(
        input_shape, default_size, min_size, require_flatten=include_top
    )
    if input_tensor is None:
        image = keras.layers.Input(shape=input_shape)
        return image, image
    if not keras.backend.is_keras_tensor(input_tensor):
        image = keras.layers.Input(tensor=input_tensor, shape=input_shape)
        return image, image
    sources = keras.utils.get_source_inputs(input_tensor)
    return input_tensor, sources[0] if len(sources) == 1 else sources


def head(x, include_top, pooling, classes, classifier_activation):
    """Global average pooling and the classifier, or the requested pooling."""
    if include_top:
        keras_internals.validate_classifier_activation(classifier_activation)
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return keras.layers.Dense(
            classes, activation=classifier_activation, name="predictions"
        )(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def batch_norm(x, momentum, name):
    """BatchNorm as in the authors' release (epsilon 2e-5)."""
    return keras.layers.BatchNormalization(momentum=momentum, epsilon=2e-5, name=name)(
        x
    )


def release_padding(x, kernel_size, strides, name):
    """`(x, padding)` for a convolution or pooling padded as the release pads.

    The release pads every k x k window by k // 2 on all sides (MXNet
    `pad=(1, 1)` for 3x3, `(3, 3)` for the 7x7 stem). With stride 1, Keras'
    `"same"` is that padding. With stride 2 it pads the bottom and right only,
    so each window lands one pixel off, and a 1x1 stride-2 shortcut no longer
    lines up with its 3x3 branch; the padding is then explicit.
    """
    if strides == 1 or kernel_size == 1:
        return x, "same"
    x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
    return x, "valid"

"""The `keras.applications` conventions every IGC builder follows.

Input handling, argument validation, the classification head and weight
loading live here once, so each network file only describes its layers.
"""

import keras

from keras_igc import keras_internals
from keras_igc.layers import FusedBatchNormalization
from keras_igc.traced_model import TracedModel

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
    *,
    sources,
    **weights_context,
):
    """A keras.applications model: validated arguments, the input, the network's
    `features(image)`, the head, and the weights `weights` names, read through
    the network's `sources` (`keras_igc.applications.weights.Sources`)."""
    check_arguments(pooling, include_top, classes)
    variant = weights_context.get("alpha")  # the published file's key
    source = sources.resolve(weights, variant, include_top, classes)
    image, inputs = image_input(
        input_tensor, input_shape, default_size, min_size, include_top
    )
    outputs = head(
        features(image), include_top, pooling, classes, classifier_activation
    )
    model = TracedModel(inputs, outputs, name=name)
    if source is not None:
        sources.load(model, source, **weights_context)
    return model


def check_arguments(pooling, include_top, classes):
    """Validate the head's arguments before any layer is created."""
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


def batch_norm(x, momentum, name, epsilon=2e-5):
    """BatchNorm (epsilon 2e-5 as in the IGC authors' release), trained with
    TensorFlow's fused kernel: `FusedBatchNormalization` computes what
    Keras' BatchNormalization does, in a sixth less of a training step."""
    return FusedBatchNormalization(momentum=momentum, epsilon=epsilon, name=name)(x)


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

"""Argument checks shared by the layers, builders and training code."""

import math
import numbers


def positive_int(value, name, owner=None):
    """`value` as an int if it is a positive integer (Python or NumPy; a bool
    is not), else a ValueError that names the argument and the value."""
    if not is_integer(value) or value < 1:
        prefix = f"{owner} " if owner else ""
        raise ValueError(
            f"{prefix}`{name}` must be a positive integer. Received: {name}={value!r}."
        )
    return int(value)


def implementation(value, strides, owner, choices=None):
    """`value` if it is one of `choices` (default
    `keras_igc.forms.IMPLEMENTATIONS`, the grouped layers' forms) that works
    with `strides` (a pair), else a ValueError that names it and the fix."""
    from keras_igc.forms import IMPLEMENTATIONS

    choices = IMPLEMENTATIONS if choices is None else choices
    if value not in choices:
        raise ValueError(
            f"{owner} `implementation` must be one of {choices}. "
            f"Received: implementation={value!r}."
        )
    if value == "depthwise" and strides[0] != strides[1]:
        raise ValueError(
            f"{owner} implementation='depthwise' needs equal strides along "
            f"height and width (depthwise kernels support no other). "
            f"Received strides={tuple(strides)!r}. Use implementation='split' "
            f"or 'auto'."
        )
    return value


def image_size(value, name="image_size"):
    """`value` as a `(height, width)` pair of positive ints, else a
    ValueError that names it (a zero size would resize every image to
    nothing)."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(is_integer(v) and v > 0 for v in pair):
        raise ValueError(
            f"`{name}` must be (height, width), two positive integers, e.g. "
            f"(224, 224). Received: {name}={value!r}."
        )
    return tuple(int(v) for v in pair)


def finite_float(value, name, owner=None, *, positive=False):
    """`value` as a float if it is a finite real number, non-negative (or
    positive with `positive=True`), else a ValueError naming the argument."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        prefix = f"{owner} " if owner else ""
        kind = "positive" if positive else "non-negative"
        raise ValueError(
            f"{prefix}`{name}` must be a finite {kind} number. Received: "
            f"{name}={value!r}."
        )
    return float(value)


def is_integer(value):
    """Whether `value` is an integer (Python or NumPy); a bool is not."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def non_negative_int(value, name, owner=None):
    """`value` as an int if it is an integer >= 0, else a ValueError naming it."""
    if not is_integer(value) or value < 0:
        prefix = f"{owner} " if owner else ""
        raise ValueError(
            f"{prefix}`{name}` must be a non-negative integer. Received: "
            f"{name}={value!r}."
        )
    return int(value)


def graph_model(model, task, alternative="rebuild it with the functional API"):
    """`model` if it is a built Functional or Sequential `keras.Model`, which
    `task` ("Export", "quantize_aware") clones layer by layer; else an error
    that says why and what to do instead (`alternative`)."""
    import keras

    from keras_igc import keras_internals

    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{task} expects a keras.Model. Received: {type(model).__name__}."
        )
    if not isinstance(model, keras.Sequential) and not keras_internals.is_graph_model(
        model
    ):
        raise ValueError(
            f"{task} clones the model layer by layer, which needs a Functional or "
            f"Sequential model; {model.name!r} is a subclassed "
            f"{type(model).__name__}. Instead, {alternative}."
        )
    if not model.built or not model.inputs:
        raise ValueError(
            f"Model {model.name!r} is not built, so its input shape is unknown. "
            f"Start it with keras.Input(shape) (or call it on a batch) first."
        )
    quantized = [
        layer.name
        for layer in keras_internals.all_layers(model)
        if getattr(layer, "quantization_mode", None) is not None
    ]
    if quantized:
        raise ValueError(
            f"{task} takes a float model; model.quantize() stored the weights of "
            f"{quantized[:3]}{' and more' if len(quantized) > 3 else ''} of "
            f"{model.name!r} as int8. Use the float model it was quantized from "
            f"(export: with quantize='int8', --quantize int8, for int8 files)."
        )
    return model

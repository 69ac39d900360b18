"""BatchNorm folded into the layer before it, as quantization-aware training
folds it (Jacob et al., 2018): one place for every quantization-aware layer.

The kernel is scaled by the moving statistics (`scale`) and rounded; in
training the layer's output is scaled back and normalised with the batch's
statistics, which keep updating the moving ones (`normalize`); once the
layer's `frozen` switch is 1, and always at inference, it adds the folded
bias (`folded_bias`, on the int8 files' grid) and so computes exactly the
folded layer the exports write.
"""

import keras
from keras import ops


def scale(bn):
    """gamma / sqrt(moving variance + epsilon), per channel (a zero scale
    becomes 1: the folded kernel is then 0 either way); None without `bn`."""
    if bn is None:
        return None
    factor = ops.rsqrt(bn.moving_variance + bn.epsilon)
    if bn.gamma is not None:
        factor = bn.gamma * factor
    return ops.where(ops.equal(factor, 0.0), ops.ones_like(factor), factor)


def folded_bias(bn, factor, bias):
    """The bias of the layer with `bn` folded in, as the export folds it:
    (bias - moving mean) * factor + beta (`bias` None: no bias)."""
    beta = 0.0 if bn.beta is None else bn.beta
    return ((0.0 if bias is None else bias) - bn.moving_mean) * factor + beta


def normalize(bn, frozen, outputs, factor, bias, training, on_grid=None):
    """`bn` applied to the output of the layer whose kernel was scaled by
    `factor`: at inference the folded bias; in training before the freeze
    (`frozen` 0), the output scaled back and normalised with the batch's
    statistics, which update the moving ones; after it (`frozen` 1),
    exactly the layer of inference. `on_grid(bias)`: the folded bias as the
    int8 files store it (default: as it is)."""
    on_grid = on_grid or (lambda b: b)
    folded = outputs + on_grid(folded_bias(bn, factor, bias))
    if not training:
        return folded
    beta = 0.0 if bn.beta is None else bn.beta
    unscaled = outputs / factor + (0.0 if bias is None else bias)
    axes = tuple(range(len(unscaled.shape) - 1))
    batch_mean, batch_variance = ops.moments(unscaled, axes=axes)
    # Frozen: the moving statistics, left as they are.
    keep = bn.momentum + (1 - bn.momentum) * frozen
    bn.moving_mean.assign(keep * bn.moving_mean + (1 - keep) * batch_mean)
    bn.moving_variance.assign(keep * bn.moving_variance + (1 - keep) * batch_variance)
    gamma = 1.0 if bn.gamma is None else bn.gamma
    normalized = (unscaled - batch_mean) * gamma * ops.rsqrt(
        batch_variance + bn.epsilon
    ) + beta
    return ops.where(frozen > 0, folded, normalized)


def with_bias(outputs, bias, training, on_grid):
    """`outputs` of a layer with no BatchNorm after it, plus its `bias`
    (None: none): at inference as the int8 files store it, `on_grid(bias)`."""
    if bias is None:
        return outputs
    return outputs + (bias if training else on_grid(bias))


def fused_config(batch_norm, activation, momentum):
    """The config entries of a quantization-aware layer that folds
    `batch_norm` (None: none), fuses `activation` and moves its ranges with
    `momentum`."""
    serialize = keras.saving.serialize_keras_object
    return {
        "batch_norm": None if batch_norm is None else serialize(batch_norm),
        "activation": activation,
        "momentum": momentum,
    }


def check(batch_norm, owner):
    """`batch_norm` (None allowed) is a BatchNormalization over the channels."""
    if batch_norm is not None and (
        not isinstance(batch_norm, keras.layers.BatchNormalization)
        or batch_norm.axis not in (-1, 3)
    ):
        raise ValueError(
            f"{owner} `batch_norm` must be a BatchNormalization over the last "
            f"axis (the channels). Received: {batch_norm!r}."
        )

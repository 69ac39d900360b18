"""Parameter and multiply-accumulate counts for IGC and regular convolutions.

The formulas of the IGC paper (Zhang et al., "Interleaved Group Convolutions
for Deep Neural Networks", ICCV 2017, arXiv:1707.02725): an IGC
block with `L` primary and `M` secondary partitions, kernel area `S` and
`G = L*M` input channels has `T = L*M*M*S + M*L*L = G^2 (S/L + 1/M)` weights;
a regular convolution of width `C` has `S*C^2`. Multiply-accumulates (MACs)
are the weights times the output positions, since every weight is used once
per output pixel.
"""

import math


def _area(kernel_size):
    if isinstance(kernel_size, int):
        return kernel_size * kernel_size
    kh, kw = kernel_size
    return kh * kw


def igc_params(
    primary_partitions,
    secondary_partitions,
    kernel_size=3,
    input_channels=None,
    use_bias=False,
):
    """Weights of an IGC block: `L*M*M*S + M*L*L` for a `G`-channel input.

    Args:
        primary_partitions: `L`.
        secondary_partitions: `M`.
        kernel_size: int or `(kh, kw)` of the primary convolution.
        input_channels: input width; defaults to `G = L*M`. Each primary
            partition reads `input_channels / L` channels.
        use_bias: add the `G` biases.
    """
    L, M = primary_partitions, secondary_partitions
    channels = L * M if input_channels is None else input_channels
    if channels % L:
        raise ValueError(
            f"input_channels={channels} does not split into "
            f"primary_partitions={L} partitions; use a multiple of {L}."
        )
    primary = _area(kernel_size) * (channels // L) * L * M
    secondary = M * L * L
    return primary + secondary + (L * M if use_bias else 0)


def igcv2_params(channels, partitions, kernel_size=3, use_bias=False):
    """Weights of an IGCV2 block (`keras_igc.IGCV2Conv2D`) on `C` channels:
    `S * C` depthwise plus `C * C / p` for each pointwise group convolution of
    `p` partitions."""
    for groups in partitions:
        if channels % groups:
            raise ValueError(
                f"channels={channels} does not split into partitions={groups}; "
                f"each partition count must divide the width."
            )
    pointwise = sum(channels * (channels // groups) for groups in partitions)
    return _area(kernel_size) * channels + pointwise + (channels if use_bias else 0)


def regular_conv_params(channels, kernel_size=3, input_channels=None, use_bias=False):
    """Weights of a dense convolution of width `channels`: `S * C_in * C`."""
    c_in = channels if input_channels is None else input_channels
    return _area(kernel_size) * c_in * channels + (channels if use_bias else 0)


def igc_macs(
    primary_partitions,
    secondary_partitions,
    output_size,
    kernel_size=3,
    input_channels=None,
):
    """Multiply-accumulates of an IGC block for one image.

    `output_size` is the output `(height, width)` (or one int for a square).
    """
    weights = igc_params(
        primary_partitions, secondary_partitions, kernel_size, input_channels
    )
    return weights * _positions(output_size)


def regular_conv_macs(channels, output_size, kernel_size=3, input_channels=None):
    """Multiply-accumulates of a dense convolution for one image."""
    return regular_conv_params(channels, kernel_size, input_channels) * _positions(
        output_size
    )


def _positions(output_size):
    if isinstance(output_size, int):
        return output_size * output_size
    height, width = output_size
    return height * width


def igc_width_for_budget(budget, secondary_partitions, kernel_size=3):
    """The (real-valued) widest `G` with `L*M*M*S + M*L*L <= budget` for this `M`.

    With `L = G/M` the count is `S*M*G + G^2/M`, so
    `G = M * (sqrt(S^2 M^2 + 4 budget / M) - S*M) / 2`.
    """
    M, S = secondary_partitions, _area(kernel_size)
    if budget <= 0:
        raise ValueError(f"budget must be positive. Received: budget={budget!r}.")
    return M * (math.sqrt(S * S * M * M + 4 * budget / M) - S * M) / 2


def widest_igc_partitions(budget, secondary_partitions, kernel_size=3):
    """The largest whole `L` (and so widest `G = L*M`) within a weight budget.

    Returns:
        `(L, M)` with `igc_params(L, M, kernel_size) <= budget`.

    Raises:
        ValueError: when even `L = 1` exceeds the budget.
    """
    M = secondary_partitions
    L = math.floor(igc_width_for_budget(budget, M, kernel_size) / M + 1e-9)
    while L >= 1 and igc_params(L, M, kernel_size) > budget:
        L -= 1
    if L < 1:
        raise ValueError(
            f"A budget of {budget} weights is too small for any IGC block with "
            f"secondary_partitions={M} and kernel_size={kernel_size}: L=1 "
            f"already needs {igc_params(1, M, kernel_size)}. Raise the budget "
            f"or lower secondary_partitions."
        )
    return L, M


def max_igc_width(budget, kernel_size=3):
    """The widest `G` any `(L, M)` reaches for a budget: `(T / (2 sqrt(S)))^(2/3)`.

    Reached when `M * S = L`.
    """
    return (budget / (2 * math.sqrt(_area(kernel_size)))) ** (2 / 3)


def model_complexity(model, count_batch_norm=False):
    """Weights and multiply-accumulates of a built Keras model, for one input.

    Counts the convolutions (`Conv2D`, `DepthwiseConv2D`, `IGCConv2D`,
    `IGCV2Conv2D`,
    `MSGCConv2D` at its dense cost, and their subclasses, including shortcut
    projections) and `Dense` layers, the convention of the IGC paper's
    tables: a weight costs one multiply-accumulate per output position.
    Pooling and additions are not counted.

    Args:
        model: a built model with fixed spatial input size.
        count_batch_norm: also count one MAC per BatchNorm output element
            (a scale and shift), the convention of the MSGC paper's table.

    Returns:
        dict with `conv_params` (convolution weights only, no biases),
        `total_params` (trainable weights: adds BatchNorm scale/offset,
        biases and the classifier) and `macs`.

    Raises:
        ValueError: when a layer's output has unknown spatial size; build the
            model with a fixed `input_shape` to count MACs.
    """
    import keras

    from keras_igc.layers import IGCConv2D, IGCV2Conv2D, MSGCConv2D

    conv_params = 0
    macs = 0
    for wrapper in _leaf_layers(model):
        # A wrapper (a quantization-aware convolution) costs what it wraps.
        wrapped = isinstance(wrapper, keras.layers.Wrapper)
        layer = wrapper.layer if wrapped else wrapper
        if isinstance(layer, MSGCConv2D):  # outputs [feature map, gates]
            weights, shape = _size(layer.kernel), layer.output[0].shape
        elif isinstance(layer, IGCConv2D):
            weights = _size(layer.primary.kernel) + _size(layer.secondary.kernel)
            shape = _feature_map(wrapper).shape
        elif isinstance(layer, IGCV2Conv2D):
            weights = _size(layer.depthwise.kernel)
            weights += sum(_size(conv.kernel) for conv in layer.pointwise)
            shape = layer.output.shape
        elif isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
            weights, shape = _size(layer.kernel), _feature_map(wrapper).shape
        elif isinstance(layer, keras.layers.Dense):
            macs += _size(layer.kernel)
            continue
        elif count_batch_norm and isinstance(layer, keras.layers.BatchNormalization):
            macs += math.prod(layer.output.shape[1:])
            continue
        else:
            continue
        height, width = shape[1:3]
        if height is None or width is None:
            raise ValueError(
                f"Cannot count MACs of layer {layer.name!r}: its output has unknown "
                f"spatial size {shape}. Build the model with a fixed "
                f"input_shape, e.g. input_shape=(32, 32, 3)."
            )
        conv_params += weights
        macs += weights * height * width
    total = sum(_size(w) for w in model.trainable_weights)
    return {"conv_params": conv_params, "total_params": total, "macs": macs}


def _size(variable):
    return math.prod(variable.shape)


def _feature_map(layer):
    """`layer`'s output (a quantization-aware convolution may also return
    its output's range: the first of its outputs)."""
    output = layer.output
    return output[0] if isinstance(output, list | tuple) else output


def _leaf_layers(model):
    """Layers of a model, descending into nested models but not into IGC blocks."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer

import math

import keras
from keras import ops

from keras_igc.layers.channel_shuffle import ChannelShuffle
from keras_igc.layers.group_conv2d import GroupConv2D
from keras_igc.layers.int8_kernel import (
    QuantizableDepthwiseConv2D,
    check_quantized,
    quantized_paths,
    sublayer_policy,
)
from keras_igc.validation import positive_int


@keras.saving.register_keras_serializable(package="keras_igc")
class IGCV2Conv2D(keras.layers.Layer):
    """Interleaved structured sparse convolution (IGCV2: Xie, Zhang, Wang and
    Qi, "IGCV2: Interleaved Structured Sparse Convolutional Neural Networks",
    CVPR 2018).

    IGCV2 extends IGC's pair of group convolutions to a chain: a channel-wise
    (depthwise) `k x k` convolution `W_1`, then `K - 1` pointwise group
    convolutions `W_2 ... W_K` with a fixed permutation between each two,
    `W = P_K W_K P_{K-1} ... P_2 W_2 W_1` (the depthwise convolution mixes no
    channels, so the chain needs no permutation before `W_2`; the last, `P_K`,
    puts the outputs back in the input's order, as IGC's inverse permutation
    does). Each is a real sublayer:

    - `depthwise`: `DepthwiseConv2D(kernel_size)`, all the spatial work;
    - `pointwise[i]`: a `GroupConv2D(C, 1, groups=partitions[i])`, so each of
      its partitions mixes `C / partitions[i]` channels;
    - `permutations[i]`: `ChannelShuffle(groups=partitions[i])` after it.

    The complementary condition: every input channel reaches every output
    channel through exactly one path. Number the channels in mixed radix with
    digits `d_i` in `range(C / partitions[i])`, `d_1` the fastest; pointwise
    convolution `i` mixes the channels that differ in digit `d_i` only, and
    the shuffle after it makes `d_{i+1}` the fastest for the next one. A path
    from an input to an output then changes each digit once, at its own
    convolution, and exists for every pair exactly when the partition sizes
    multiply to the width: `prod(C / partitions[i]) == C`. The layer checks
    this when built; where it fails, the error names the partition counts and
    a chain of the same length that meets it. `partitions=(1,)` is the
    Xception block (depthwise, then one dense 1x1); `(L, M)` with `L * M = C`
    after a depthwise convolution is IGC with `M = 1`-wide primaries
    followed by two interleaved 1x1 group convolutions.

    Weights: `S * C` depthwise (`S` the kernel area) plus `C * C /
    partitions[i]` per pointwise convolution, against `S * C * C` dense
    (`keras_igc.complexity.igcv2_params`). The chain is linear; there is no
    activation or normalization inside (the paper puts them after the
    block). `dense_equivalent_kernel()` returns the one dense kernel it
    equals.

    Input: `(batch, height, width, C)` channels_last, with `C` known and a
    multiple of every partition count. Output: `(batch, new_height,
    new_width, C)`.

    Args:
        partitions: sequence of positive ints, the partition counts (groups)
            of the pointwise group convolutions `W_2 ... W_K`, in order.
        kernel_size, strides, padding, dilation_rate: of the depthwise
            convolution (int or pair; `"valid"` or `"same"`).
        use_bias: add a bias, stored on the last pointwise convolution (a
            bias anywhere else would be redundant: the chain is linear).
        kernel_initializer, bias_initializer: of every kernel and the bias.
        quantized: None, or the convolutions that `model.quantize("int8")`
            stored as int8 (`{"depthwise": "int8", "pointwise1": "int8",
            ...}`, `keras_igc.layers.int8_kernel`): `get_config` sets it, so
            that a saved quantized block loads as one.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Example:

    >>> import keras, keras_igc
    >>> layer = keras_igc.IGCV2Conv2D((8, 8), 3, padding="same", use_bias=False)
    >>> tuple(layer(keras.ops.ones((1, 16, 16, 64))).shape)
    (1, 16, 16, 64)
    >>> layer.count_params()  # 9 * 64 + 64 * 8 + 64 * 8
    1600
    """

    def __init__(
        self,
        partitions,
        kernel_size=3,
        strides=1,
        padding="valid",
        dilation_rate=1,
        use_bias=True,
        kernel_initializer="he_uniform",
        bias_initializer="zeros",
        quantized=None,
        **kwargs,
    ):
        for unsupported in ("activation", "data_format", "groups"):
            if unsupported in kwargs:
                raise ValueError(
                    f"IGCV2Conv2D has no `{unsupported}` argument (received "
                    f"{unsupported}={kwargs[unsupported]!r}): the block is a "
                    f"linear, channels_last chain whose groups are `partitions`; "
                    f"add activations and normalization as layers after it."
                )
        super().__init__(**kwargs)
        if isinstance(partitions, int) or not isinstance(partitions, list | tuple):
            raise ValueError(
                f"IGCV2Conv2D `partitions` must be a list or tuple of partition "
                f"counts, one per pointwise group convolution, e.g. (8, 8). "
                f"Received: partitions={partitions!r}."
            )
        if not partitions:
            raise ValueError(
                "IGCV2Conv2D needs at least one pointwise convolution: "
                "partitions=(1,) is the Xception block. Received: partitions=()."
            )
        self.partitions = tuple(
            positive_int(p, "partitions", "IGCV2Conv2D") for p in partitions
        )
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        paths = ["depthwise"] + [
            f"pointwise{i + 1}" for i in range(len(self.partitions))
        ]
        self.quantized = check_quantized(quantized, paths, "IGCV2Conv2D")
        self.depthwise = QuantizableDepthwiseConv2D(
            kernel_size, strides=strides, padding=padding,
            dilation_rate=dilation_rate, use_bias=False,
            depthwise_initializer=self.kernel_initializer, name="depthwise",
            dtype=self._sublayer_policy("depthwise"),
        )  # fmt: skip
        self.permutations = [
            ChannelShuffle(groups, name=f"permutation{i + 1}", dtype=self.dtype_policy)
            for i, groups in enumerate(self.partitions)
        ]
        # Their width is the input's, known at build.
        self.pointwise = None

    def build(self, input_shape):
        channels = self._check_input_shape(input_shape)
        self.input_spec = keras.InputSpec(ndim=4, axes={-1: channels})
        self.depthwise.build(input_shape)
        shape = self.depthwise.compute_output_shape(input_shape)
        last = len(self.partitions) - 1
        self.pointwise = [
            GroupConv2D(
                channels,
                1,
                groups=groups,
                use_bias=self.use_bias and i == last,
                kernel_initializer=self.kernel_initializer,
                bias_initializer=self.bias_initializer,
                name=f"pointwise{i + 1}",
                dtype=self._sublayer_policy(f"pointwise{i + 1}"),
            )  # fmt: skip
            for i, groups in enumerate(self.partitions)
        ]
        for conv, permutation in zip(self.pointwise, self.permutations, strict=True):
            conv.build(shape)
            permutation.build(shape)

    def _sublayer_policy(self, path):
        return sublayer_policy(self.dtype_policy, self.quantized, path)

    def _check_input_shape(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"IGCV2Conv2D expects a 4D input (batch, height, width, channels) "
                f"with a known channel count. Received input_shape="
                f"{tuple(input_shape)}."
            )
        channels = input_shape[-1]
        check_complementary(channels, self.partitions)
        return channels

    def call(self, inputs):
        x = self.depthwise(inputs)
        for conv, permutation in zip(self.pointwise, self.permutations, strict=True):
            x = permutation(conv(x))
        return x

    def compute_output_shape(self, input_shape):
        self._check_input_shape(input_shape)
        return self.depthwise.compute_output_shape(input_shape)

    def dense_equivalent_kernel(self):
        """The `(kh, kw, C, C)` kernel of the one dense convolution the chain
        equals (with the depthwise convolution's strides, padding and
        dilation, and the layer's bias in the output order)."""
        if not self.built:
            raise ValueError(
                "IGCV2Conv2D.dense_equivalent_kernel() needs a built layer: call "
                "the layer on an input or call layer.build(input_shape) first."
            )
        channels = self.depthwise.kernel.shape[2]
        # The chain applied to the identity: row i is input channel i's path.
        mixing = ops.eye(channels, dtype=self.depthwise.kernel.dtype)
        for conv, permutation in zip(self.pointwise, self.permutations, strict=True):
            mixing = permutation(_pointwise_product(mixing, conv.kernel, conv.groups))
        spatial = self.depthwise.kernel[:, :, :, 0]  # (kh, kw, C)
        return spatial[:, :, :, None] * mixing[None, None, :, :]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "partitions": list(self.partitions),
                "kernel_size": self.depthwise.kernel_size,
                "strides": self.depthwise.strides,
                "padding": self.depthwise.padding,
                "dilation_rate": self.depthwise.dilation_rate,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        pointwise = self.pointwise or []
        quantized = quantized_paths(
            {"depthwise": self.depthwise}
            | {f"pointwise{i + 1}": conv for i, conv in enumerate(pointwise)}
        )
        if quantized:  # the default config stays as it was
            config["quantized"] = quantized
        return config


def _pointwise_product(rows, kernel, groups):
    """`rows @ W` for a 1x1 group convolution's kernel `(1, 1, C/g, C)`."""
    size = kernel.shape[2]
    outputs = kernel.shape[3] // groups
    blocks = [
        ops.matmul(
            rows[:, g * size : (g + 1) * size],
            kernel[0, 0, :, g * outputs : (g + 1) * outputs],
        )
        for g in range(groups)
    ]
    return ops.concatenate(blocks, axis=-1)


def check_complementary(channels, partitions):
    """A ValueError unless `partitions` meet IGCV2's complementary condition on
    `channels` channels: each divides it and the partition sizes multiply to
    it (exactly one path from every input channel to every output channel)."""
    for groups in partitions:
        if channels % groups:
            raise ValueError(
                f"IGCV2Conv2D cannot split {channels} channels into "
                f"partitions={groups} (of partitions={tuple(partitions)}): each "
                f"partition count must divide the width. Use one of "
                f"{_divisors(channels)}."
            )
    sizes = [channels // groups for groups in partitions]
    product = math.prod(sizes)
    if product == channels:
        return
    paths = "more than one path" if product > channels else "no path"
    raise ValueError(
        f"IGCV2Conv2D partitions={tuple(partitions)} on {channels} channels "
        f"break the complementary condition: partitions of "
        f"{' x '.join(map(str, sizes))} = {product} channels give {paths} "
        f"between some input and output channels; the sizes must multiply to "
        f"{channels}. {_suggestion(channels, len(partitions))}"
    )


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def _suggestion(channels, length):
    """A chain of `length` partition counts that meets the condition, if any."""
    sizes, rest = [], channels
    for remaining in range(length, 0, -1):
        # The divisor of what is left nearest its `remaining`-th root.
        target = rest ** (1 / remaining)
        size = min(_divisors(rest), key=lambda d: (abs(math.log(d / target)), d))
        sizes.append(size)
        rest //= size
    if rest != 1 or math.prod(sizes) != channels:
        return "Use fewer pointwise convolutions."
    partitions = tuple(channels // size for size in sizes)
    return f"For example partitions={partitions} (sizes {sizes})."

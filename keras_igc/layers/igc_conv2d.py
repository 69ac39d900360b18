import math

import keras
from keras import ops

from keras_igc import forms, validation
from keras_igc import ops as igc_ops
from keras_igc.layers.channel_shuffle import ChannelShuffle
from keras_igc.layers.int8_kernel import (
    QuantizableConv2D,
    check_quantized,
    quantized_paths,
    sublayer_policy,
)
from keras_igc.validation import positive_int

# The convolutions `model.quantize("int8")` reaches (config `quantized`).
QUANTIZABLE = ("primary", "secondary")


@keras.saving.register_keras_serializable(package="keras_igc")
class IGCConv2D(keras.layers.Layer):
    """Interleaved group convolution (IGC, Zhang et al., ICCV 2017).

    The block maps its input to `G = L * M` channels in four steps, each a
    real sublayer:

    1. `primary`: a `Conv2D(G, kernel_size, groups=L)`. The input channels
       split into `L` primary partitions; each produces `M` channels with a
       spatial convolution.
    2. `permutation`: `ChannelShuffle(groups=L)`, so that secondary partition
       `m` holds output channel `m` of every primary partition.
    3. `secondary`: a 1x1 `Conv2D(G, 1, groups=M)`, one `L x L` mix per
       secondary partition.
    4. `inverse_permutation`: `ChannelShuffle(groups=M)`, restoring the
       primary order.

    The block is linear: it equals one dense convolution whose kernel
    `dense_equivalent_kernel()` returns. It has `L*M*M*S + M*L*L` weights for
    a `G`-channel input (`S` the kernel area) against `G*G*S` for a regular
    convolution, so at equal parameters it is wider. There is no activation
    and no normalization inside; the paper follows each block with
    `BatchNormalization` and `ReLU` layers.

    Input: a 4D `channels_last` tensor `(batch, height, width, channels)`
    with `channels` divisible by `L` (each primary partition reads
    `channels / L` of them). The input width may differ from `G`, as in the
    paper's transitions between stages. Output: `(batch, new_height,
    new_width, G)`.

    Args:
        primary_partitions: `L`, the number of primary partitions (groups of
            the spatial convolution). `L = 1` is a regular convolution
            followed by a per-channel scale.
        secondary_partitions: `M`, the number of secondary partitions (groups
            of the 1x1 convolution), and the channels each primary partition
            outputs. `M = 1` is a depthwise convolution followed by a
            pointwise one (the Xception block).
        kernel_size: int or tuple of 2 ints, the primary kernel size.
        strides: int or tuple of 2 ints, the primary strides.
        padding: `"valid"` or `"same"` (case-insensitive).
        data_format: only `"channels_last"` is supported (`None` resolves to
            `keras.config.image_data_format()`).
        dilation_rate: int or tuple of 2 ints, the primary dilation. Strides
            and dilation cannot both exceed 1.
        use_bias: whether the block adds a bias. It is stored on the
            secondary convolution; a primary bias would be redundant because
            the block is linear.
        implementation: how the block is computed; all give the same output
            from the same weights (`keras_igc.forms`).
            `"grouped"` runs the primary with the backend's own grouped
            kernel (oneDNN or cuDNN; on TensorFlow without the XLA function
            Keras' `Conv2D(groups)` compiles) and the secondary with both
            permutations as one matrix product. `"depthwise"` runs the
            primary as a depthwise convolution with depth multiplier `M`,
            `"split"` as `L` dense convolutions on channel slices (each then
            with the same product). `"dense"` runs one convolution
            with the dense-equivalent kernel. `"auto"` (default) picks by
            backend, device and partition sizes
            (`keras_igc.forms`); `active_implementation` tells which one
            after `build`, `execution_form` why.
        kernel_initializer, kernel_regularizer, kernel_constraint: applied
            to both the primary and the secondary kernel.
        bias_initializer, bias_regularizer, bias_constraint: for the bias.
        quantized: None, or the sublayers that `model.quantize("int8")`
            stored as int8 (`{"primary": "int8", "secondary": "int8"}`,
            `keras_igc.layers.int8_kernel`): `get_config` sets it, so that a
            saved quantized block loads as one.
        **kwargs: base layer keyword arguments, such as `name`, `dtype` and
            `activity_regularizer`.

    Example:

    >>> import keras, keras_igc
    >>> model = keras.Sequential([
    ...     keras.Input((32, 32, 48)),
    ...     keras_igc.IGCConv2D(24, 2, 3, padding="same", use_bias=False),
    ...     keras.layers.BatchNormalization(),
    ...     keras.layers.ReLU(),
    ... ])
    >>> model.output_shape
    (None, 32, 32, 48)
    >>> model.layers[0].count_params()  # L*M*M*9 + M*L*L
    2016
    """

    def __init__(
        self,
        primary_partitions,
        secondary_partitions,
        kernel_size=3,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        use_bias=True,
        implementation="auto",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        quantized=None,
        **kwargs,
    ):
        if "activation" in kwargs:
            raise ValueError(
                f"IGCConv2D has no `activation` argument (received "
                f"activation={kwargs['activation']!r}): the block is linear, "
                f"and the paper follows it with BatchNormalization and then "
                f"ReLU. Add those as layers after IGCConv2D."
            )
        super().__init__(**kwargs)
        self.primary_partitions = positive_int(
            primary_partitions, "primary_partitions", "IGCConv2D"
        )
        self.secondary_partitions = positive_int(
            secondary_partitions, "secondary_partitions", "IGCConv2D"
        )
        self.kernel_size = _int_pair("kernel_size", kernel_size)
        self.strides = _int_pair("strides", strides)
        self.dilation_rate = _int_pair("dilation_rate", dilation_rate)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"IGCConv2D cannot combine strides > 1 with dilation_rate > 1 "
                f"(received strides={strides!r}, dilation_rate="
                f"{dilation_rate!r}); no backend convolution supports both. "
                f"Use one IGCConv2D with dilation and a separate pooling or "
                f"strided layer."
            )
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(
                f'IGCConv2D `padding` must be "valid" or "same". Received: '
                f"padding={padding!r}."
            )
        self.padding = padding.lower()
        self.data_format = data_format or keras.config.image_data_format()
        if self.data_format != "channels_last":
            raise ValueError(
                f"IGCConv2D supports only data_format='channels_last' (received "
                f"{self.data_format!r}, from the argument or from "
                f"keras.config.image_data_format()). Transpose the input with "
                f"keras.layers.Permute((2, 3, 1)) or pass "
                f"data_format='channels_last'."
            )
        self.implementation = validation.implementation(
            implementation, self.strides, "IGCConv2D"
        )
        self.execution_form = None
        self._merged_primary_kernel = None
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self._create_sublayers(check_quantized(quantized, QUANTIZABLE, "IGCConv2D"))

    def _create_sublayers(self, quantized):
        """The four steps of the block, as sublayers (built in `build`); the
        convolutions `quantized` names with an int8 policy."""
        kernel_args = dict(
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            kernel_constraint=self.kernel_constraint,
        )

        def policy(sublayer):
            return sublayer_policy(self.dtype_policy, quantized, sublayer)

        self.primary = QuantizableConv2D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            groups=self.primary_partitions,
            use_bias=False,
            name="primary",
            dtype=policy("primary"),
            **kernel_args,
        )
        self.permutation = ChannelShuffle(
            self.primary_partitions, name="permutation", dtype=self.dtype_policy
        )
        self.secondary = QuantizableConv2D(
            self.filters,
            1,
            groups=self.secondary_partitions,
            use_bias=self.use_bias,
            bias_initializer=self.bias_initializer,
            bias_regularizer=self.bias_regularizer,
            bias_constraint=self.bias_constraint,
            name="secondary",
            dtype=policy("secondary"),
            **kernel_args,
        )
        self.inverse_permutation = ChannelShuffle(
            self.secondary_partitions,
            name="inverse_permutation",
            dtype=self.dtype_policy,
        )

    @property
    def filters(self):
        """Output width `G = L * M`."""
        return self.primary_partitions * self.secondary_partitions

    def build(self, input_shape):
        self._check_input_shape(input_shape)
        _check_size(self, input_shape[-1])
        # Called later on another width, Keras refuses it (as for Conv2D).
        self.input_spec = keras.InputSpec(ndim=4, axes={-1: input_shape[-1]})
        self.primary.build(input_shape)
        mid_shape = self.primary.compute_output_shape(input_shape)
        self.permutation.build(mid_shape)
        self.secondary.build(mid_shape)
        self.inverse_permutation.build(mid_shape)
        self.set_execution_form(forms.choose(self, "keras"))

    def set_execution_form(self, choice):
        """Compute the block as `choice` says from the next call or trace on.

        `choice`: a `keras_igc.forms.Choice` of kind `"igc_block"`, from
        `forms.choose(layer, runtime)`. `build` sets the `"keras"` one;
        export sets its runtime's. An export runtime's choice that merges
        groups snapshots the primary kernel as it is now: set it after the
        weights. (Keras' own merges the live kernel in each call.)
        """
        self.execution_form = forms.check_kind(choice, "igc_block", self)
        # Keras merges in the graph (the kernel trains); a converter reads a
        # constant.
        self._merged_primary_kernel = igc_ops.merged_groups_constant(
            self.primary.kernel,
            self.primary_partitions,
            choice.merge if choice.for_converter else 1,
        )

    def _check_input_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"IGCConv2D expects a 4D input (batch, height, width, channels). "
                f"Received input_shape={tuple(input_shape)}. For a single image, "
                f"add a batch axis (e.g. keras.ops.expand_dims(x, 0))."
            )
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"IGCConv2D needs a known number of input channels. Received "
                f"input_shape={tuple(input_shape)}."
            )
        L = self.primary_partitions
        if channels % L:
            divisors = [d for d in range(1, channels + 1) if channels % d == 0]
            raise ValueError(
                f"IGCConv2D got {channels} input channels, which do not split "
                f"into primary_partitions={L} partitions. Give the layer an "
                f"input width that is a multiple of {L} (e.g. "
                f"{L * math.ceil(channels / L)}), or use a primary_partitions "
                f"that divides {channels}: {divisors}."
            )

    def call(self, inputs, training=None):
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        if not keras.backend.is_float_dtype(dtype):
            raise ValueError(
                f"IGCConv2D expects floating-point inputs. Received dtype="
                f"{dtype!r}. Cast the input first, e.g. with "
                f"keras.layers.Rescaling(1 / 255) for uint8 images."
            )
        L, M = self.primary_partitions, self.secondary_partitions
        primary_kernel = ops.cast(self.primary.kernel, self.compute_dtype)
        secondary_kernel = ops.cast(self.secondary.kernel, self.compute_dtype)
        bias = None
        if self.use_bias:
            bias = ops.cast(self.secondary.bias, self.compute_dtype)
        conv_args = dict(
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
        )
        if self.active_implementation == "dense":
            kernel = igc_ops.dense_equivalent_kernel(
                primary_kernel, secondary_kernel, L, M
            )
            outputs = ops.conv(inputs, kernel, **conv_args)
        else:
            primary = igc_ops.GROUPED_CONVOLUTIONS[self.active_implementation]
            groups = L
            # Exports emit the graph ops their converters map onto the
            # runtime's (a plain grouped conv, a 1x1 conv for the secondary).
            converted = self.execution_form.for_converter
            if self.active_implementation == "grouped" and converted:
                conv_args["graph_op"] = True
                if self._merged_primary_kernel is not None:
                    primary_kernel = ops.convert_to_tensor(
                        self._merged_primary_kernel, self.compute_dtype
                    )
                    groups = inputs.shape[-1] // primary_kernel.shape[2]
            elif self.active_implementation == "grouped":
                primary_kernel, groups = igc_ops.merged_groups(
                    primary_kernel, L, self.execution_form.merge
                )
            outputs = primary(inputs, primary_kernel, groups, **conv_args)
            if converted and self.execution_form.form == "grouped":
                # The bias in its stored order, before the inverse permutation:
                # converters fold it into the secondary convolution.
                return igc_ops.secondary_grouped(
                    outputs, secondary_kernel, L, M, secondary_bias=bias
                )
            inference = self.execution_form.inference_secondary
            if converted or (inference == "conv" and not training):
                secondary = igc_ops.secondary_conv
            elif self.execution_form.secondary == "grouped":
                secondary = igc_ops.secondary_batched
            else:
                secondary = igc_ops.secondary_dense
            outputs = secondary(outputs, secondary_kernel, L, M)
        if bias is not None:
            outputs = outputs + igc_ops.output_bias(bias, L, M)
        return outputs

    def compute_output_shape(self, input_shape):
        self._check_input_shape(input_shape)
        return self.primary.compute_output_shape(input_shape)

    def dense_equivalent_kernel(self):
        """The kernel `W = P W^d P^T W^p` of the dense convolution this block equals.

        Returns:
            Tensor of shape `(kh, kw, input_channels, G)`. A `Conv2D` with this
            kernel, the layer's strides, padding and dilation, and the layer's
            bias gives the same output.
        """
        if not self.built:
            raise ValueError(
                "IGCConv2D.dense_equivalent_kernel() needs a built layer: call "
                "the layer on an input or call layer.build(input_shape) first."
            )
        return igc_ops.dense_equivalent_kernel(
            self.primary.kernel,
            self.secondary.kernel,
            self.primary_partitions,
            self.secondary_partitions,
        )

    def dense_equivalent_bias(self):
        """The block's bias in output channel order, or None without bias."""
        if not self.use_bias:
            return None
        return igc_ops.output_bias(
            self.secondary.bias, self.primary_partitions, self.secondary_partitions
        )

    @property
    def active_implementation(self):
        """The primary's path of the form set (`execution_form.primary`;
        `"dense"` for the block's dense-equivalent kernel), None before
        `build`."""
        return None if self.execution_form is None else self.execution_form.primary

    def execution_geometry(self):
        """`(kind, forms.Geometry, implementation)`: what `keras_igc.forms`
        rules read of this layer."""
        geometry = forms.Geometry(
            self.primary_partitions, self.primary.kernel.shape[2],
            self.secondary_partitions, self.kernel_size, self.strides,
            getattr(self, "compute_dtype", "float32"),
        )  # fmt: skip
        return "igc_block", geometry, self.implementation

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "primary_partitions": self.primary_partitions,
                "secondary_partitions": self.secondary_partitions,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "use_bias": self.use_bias,
                "implementation": self.implementation,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": keras.constraints.serialize(
                    self.kernel_constraint
                ),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            }
        )
        quantized = quantized_paths(
            {"primary": self.primary, "secondary": self.secondary}
        )
        if quantized:  # the default config stays as it was
            config["quantized"] = quantized
        return config


def _int_pair(name, value):
    try:
        pair = (value, value) if isinstance(value, int) else tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair
    ):
        raise ValueError(
            f"IGCConv2D `{name}` must be a positive integer or a tuple of 2 "
            f"positive integers. Received: {name}={value!r}."
        )
    return pair


MAX_WEIGHTS = 2**31  # per layer: 8 GiB of float32


def _check_size(layer, channels):
    """Refuse a layer too large to allocate, before TensorFlow tries."""
    L, M = layer.primary_partitions, layer.secondary_partitions
    area = math.prod(layer.kernel_size)
    weights = channels * M * area + L * M * L  # primary + secondary kernels
    if weights > MAX_WEIGHTS:
        raise ValueError(
            f"IGCConv2D {layer.name!r} with {channels} input channels, L={L} and "
            f"M={M} would hold {weights:,} weights ({weights * 4 / 2**30:.0f} GiB "
            f"as float32), more than {MAX_WEIGHTS:,}. Check L and M: an IGC block "
            f"of width G = L*M has about G*M*{area} + G*L weights."
        )

import keras

from keras_igc import forms, validation
from keras_igc import ops as igc_ops
from keras_igc.layers.int8_kernel import Int8Kernel


@keras.saving.register_keras_serializable(package="keras_igc")
class GroupConv2D(Int8Kernel, keras.layers.Conv2D):
    """`keras.layers.Conv2D(groups=...)` without the slow XLA path on CPU.

    Same arguments, weights, config and outputs as `Conv2D`; only the way a
    grouped convolution is computed changes. On the TensorFlow backend Keras
    runs every grouped convolution through an XLA-compiled function, which is
    very slow on CPU and ends up inside exported SavedModels. This layer
    takes the path `keras_igc.forms.choose` picks (`active_implementation`
    names it after `build`, `execution_form` says why): the backend's own
    grouped kernel where it is fast (oneDNN, cuDNN; on TensorFlow called
    without XLA), else exact dense, depthwise or sliced convolutions. The IGC
    networks use it for their grouped shortcut projections.

    Only `data_format="channels_last"` takes the alternative paths; anything
    else behaves exactly like `Conv2D`. `model.quantize("int8")` stores its
    kernel as int8 with a scale per output channel (Keras' own `Conv2D` is
    skipped; `keras_igc.layers.int8_kernel`).

    Args:
        implementation: `"auto"` (the default: the `"keras"` rule of
            `keras_igc.forms`), or one of `keras_igc.forms.PATHS` for every
            call. Saved in the config only when it is not `"auto"`, so that
            the default config is `Conv2D`'s. Export sets each runtime's form
            with `set_execution_form`.
        *args, **kwargs: `keras.layers.Conv2D`'s.

    Example:

    >>> import keras, keras_igc
    >>> layer = keras_igc.GroupConv2D(64, 1, groups=4, use_bias=False)
    >>> tuple(layer(keras.ops.ones((1, 8, 8, 32))).shape)
    (1, 8, 8, 64)
    """

    def __init__(self, *args, implementation="auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.implementation = validation.implementation(
            implementation, self.strides, "GroupConv2D"
        )
        self.execution_form = None
        self._merged_kernel = None

    def build(self, input_shape):
        super().build(input_shape)
        if self.groups > 1 and self.data_format == "channels_last":
            choice = forms.choose(self, "keras")
        else:
            choice = forms.Choice(
                "grouped_conv", "grouped", "keras", "Conv2D's own convolution"
            )
        self.set_execution_form(choice)

    @property
    def active_implementation(self):
        """The path of the form set (`execution_form.form`), None before
        `build`."""
        return None if self.execution_form is None else self.execution_form.form

    def set_execution_form(self, choice):
        """Compute the convolution as `choice` says from the next call or
        trace on: a `keras_igc.forms.Choice` of kind `"grouped_conv"` (see
        `IGCConv2D.set_execution_form`)."""
        self.execution_form = forms.check_kind(choice, "grouped_conv", self)
        # For converters the dense form's kernel is a constant too: a kernel
        # computed in the graph stays float in an int8 file (LiteRT's
        # quantizer reads constant weights only).
        dense = choice.form == "dense" and choice.for_converter
        merge = choice.merge if choice.for_converter else 1  # Keras: in the graph
        self._merged_kernel = igc_ops.merged_groups_constant(
            self.kernel, self.groups, self.groups if dense else merge
        )

    def convolution_op(self, inputs, kernel):
        if self.groups == 1 or self.data_format != "channels_last":
            return super().convolution_op(inputs, kernel)
        path = self.active_implementation or "grouped"
        conv_args = dict(
            strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate
        )
        groups = self.groups
        if path in ("grouped", "dense") and self.execution_form.for_converter:
            # The plain graph op, which converters map onto the runtime's.
            conv_args["graph_op"] = True
            # The snapshot stands for its own kernel only: a kernel computed
            # from it (a quantization-aware layer's rounded one) runs as
            # given, in the runtime's grouped op.
            if self._merged_kernel is not None and kernel is self._kernel:
                kernel = keras.ops.convert_to_tensor(self._merged_kernel, kernel.dtype)
                groups = inputs.shape[-1] // kernel.shape[2]
            path = "grouped"  # the merged kernel's own groups, or dense
        elif path == "grouped":
            kernel, groups = igc_ops.merged_groups(
                kernel, groups, self.execution_form.merge
            )
        return igc_ops.GROUPED_CONVOLUTIONS[path](inputs, kernel, groups, **conv_args)

    def get_config(self):
        config = super().get_config()
        if self.implementation != "auto":
            config["implementation"] = self.implementation
        return config

import keras
from keras import ops

from keras_igc import forms
from keras_igc.ops import shuffle_channels, shuffle_permutation
from keras_igc.validation import positive_int


@keras.saving.register_keras_serializable(package="keras_igc")
class ChannelShuffle(keras.layers.Layer):
    """Fixed channel permutation that regroups channels across groups.

    The last axis (`channels_last`) is viewed as a `(groups, C / groups)`
    matrix and transposed, so output channel `j * groups + g` is channel `j`
    of input group `g`. This is the permutation P of an interleaved group
    convolution: with `groups=L` it gathers channel `m` of every primary
    partition into secondary partition `m`; `ChannelShuffle(groups=M)` is its
    inverse. It has no weights, and unlike a `Lambda` it loads with
    `safe_mode=True`.

    Args:
        groups: positive int, the number of groups the channels are split into.
            The channel count must be a multiple of it.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Example:

    >>> import keras, keras_igc
    >>> x = keras.ops.reshape(keras.ops.arange(6, dtype="float32"), (1, 6))
    >>> shuffled = keras_igc.ChannelShuffle(groups=2)(x)  # (a0 a1 a2 | b0 b1 b2)
    >>> keras.ops.convert_to_numpy(shuffled).tolist()  # (a0 b0 a1 b1 a2 b2)
    [[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]]
    """

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        self.groups = positive_int(groups, "groups", "ChannelShuffle")
        # A permutation of channels leaves a (batch, ..., positions) mask as is.
        self.supports_masking = True
        self.permutation = None
        self.execution_form = None

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                f"ChannelShuffle needs an input of rank 2 or more (batch, ..., "
                f"channels). Received input_shape={tuple(input_shape)}."
            )
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"ChannelShuffle needs a known channel count (last axis). "
                f"Received input_shape={input_shape}."
            )
        if channels % self.groups:
            raise ValueError(
                f"ChannelShuffle cannot split {channels} channels into "
                f"groups={self.groups}: the channel count must be a multiple "
                f"of `groups`. Received input_shape={input_shape}."
            )
        self.permutation = shuffle_permutation(channels, self.groups)
        self.input_spec = keras.InputSpec(min_ndim=2, axes={-1: channels})
        self.set_execution_form(forms.choose(self, "keras"))

    def set_execution_form(self, choice):
        """Shuffle as `choice` (a `keras_igc.forms.Choice` of kind
        `"shuffle"`) says from the next call or trace on: `"gather"`, or
        `"transpose"` (reshape, transpose, reshape) for converters."""
        self.execution_form = forms.check_kind(choice, "shuffle", self)

    def call(self, inputs):
        if self.execution_form.form == "transpose":
            return shuffle_channels(inputs, self.groups)
        return ops.take(inputs, self.permutation, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def execution_geometry(self):
        """`(kind, forms.Geometry, implementation)`: what `keras_igc.forms`
        rules read of this layer."""
        return "shuffle", forms.Geometry(groups=self.groups), "auto"

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}

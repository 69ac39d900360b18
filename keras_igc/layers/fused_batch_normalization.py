import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_igc")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization, run by TensorFlow's fused kernel.

    Keras 3 computes a training batch's moments and its normalisation with
    separate ops (a mean, a squared difference, a second mean, the scale and
    shift, and as many again in the gradient), each one pass over the
    activations. TensorFlow's `FusedBatchNormV3` (oneDNN on CPU) does the
    forward in two passes and the gradient in two, the `fused=True` of
    Keras 2: in a whole IGCNet38 training step on CPU about a sixth of the
    time (benchmarks/networks.py). At inference the one op is what
    TensorFlow's graph optimizer folds into the convolution before it.
    keras_igc's networks use this layer wherever they normalise.

    The layer computes what `keras.layers.BatchNormalization` computes: the
    same outputs (to float32 rounding), the same moving statistics (Keras'
    biased batch variance, not the kernel's unbiased one), the same
    variables, so weights move between the two freely. On the JAX and
    PyTorch backends, and wherever the kernel does not apply (a mask,
    `renorm`, `synchronized`, an axis other than the last of a 4D input,
    float64), Keras' own computation runs.

    Args:
        fused: `None` (default): the fused kernel wherever it applies;
            `False`: never (Keras' computation everywhere).
        **kwargs: the arguments of `keras.layers.BatchNormalization`.

    Example:

    >>> import keras, numpy as np
    >>> x = np.random.default_rng(0).normal(size=(8, 4, 4, 3)).astype("float32")
    >>> fused = FusedBatchNormalization(momentum=0.5)
    >>> plain = keras.layers.BatchNormalization(momentum=0.5)
    >>> y = keras.ops.convert_to_numpy(fused(x, training=True))
    >>> z = keras.ops.convert_to_numpy(plain(x, training=True))
    >>> bool(np.allclose(y, z, atol=1e-5))
    True
    >>> variances = [keras.ops.convert_to_numpy(layer.moving_variance)
    ...              for layer in (fused, plain)]
    >>> bool(np.allclose(*variances, atol=1e-6))
    True
    """

    def __init__(self, fused=None, **kwargs):
        super().__init__(**kwargs)
        if fused not in (None, False):
            raise ValueError(
                f"FusedBatchNormalization: `fused` must be None (the fused kernel "
                f"wherever it applies) or False (never). Received: fused={fused!r}"
            )
        self.fused = fused

    def _fuses(self, inputs, mask):
        return (
            self.fused is None
            and keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis % 4 == 3
            and keras.backend.result_type(inputs.dtype, "float32") == "float32"
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fuses(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = ops.cast(inputs, "float32")
        channels = x.shape[-1]
        gamma = self.gamma if self.scale else ops.ones((channels,))
        beta = self.beta if self.center else ops.zeros((channels,))
        training = bool(training and self.trainable)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, ops.cast(gamma, "float32"), ops.cast(beta, "float32"),
            mean=None if training else ops.cast(self.moving_mean, "float32"),
            variance=None if training else ops.cast(self.moving_variance, "float32"),
            epsilon=self.epsilon, data_format="NHWC", is_training=training,
        )  # fmt: skip
        if not training:
            return ops.cast(outputs, self.compute_dtype)
        # The kernel returns the unbiased variance; Keras' moving variance
        # follows the biased one, the variance it normalises with.
        count = ops.cast(ops.size(x) // channels, "float32")
        variance = variance * (count - 1.0) / ops.maximum(count, 1.0)
        for moving, value in (
            (self.moving_mean, mean),
            (self.moving_variance, variance),
        ):
            moving.assign(
                moving * self.momentum
                + ops.cast(value, moving.dtype) * (1.0 - self.momentum)
            )
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "fused": self.fused}

import keras
from keras import ops

from keras_igc.validation import positive_int


@keras.saving.register_keras_serializable(package="keras_igc")
class GhostBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization with statistics per group of examples, as on many GPUs.

    The papers' releases train on several GPUs, each normalising its own part
    of the batch (IGC on CIFAR: 64 images over 2 GPUs, 32 per GPU). In
    training this layer normalises each consecutive group of
    `virtual_batch_size` examples with that group's mean and variance, so one
    device reproduces the release's statistics. The moving statistics follow
    the mean over the groups, and over the replicas of a `tf.distribute`
    strategy (MXNet averages its devices' statistics when it saves a model;
    Keras' own BatchNormalization leaves each replica with its own). At
    inference it is a BatchNormalization.

    Args:
        virtual_batch_size: examples per group; the batch (per replica) must
            be a multiple of it. `None`: the whole batch, as
            `BatchNormalization`.
        **kwargs: the arguments of `keras.layers.BatchNormalization`.

    Example:

    >>> import keras, numpy as np
    >>> x = np.concatenate([np.zeros((2, 3)), np.full((2, 3), 10.0)]).astype("float32")
    >>> layer = GhostBatchNormalization(virtual_batch_size=2, momentum=0.0)
    >>> y = layer(x, training=True)  # each group of 2 is constant: all zeros
    >>> float(keras.ops.max(keras.ops.abs(y)))
    0.0
    >>> keras.ops.convert_to_numpy(layer.moving_mean).tolist()  # mean of groups
    [5.0, 5.0, 5.0]
    """

    def __init__(self, virtual_batch_size=None, **kwargs):
        super().__init__(**kwargs)
        if virtual_batch_size is not None:
            positive_int(
                virtual_batch_size, "virtual_batch_size", "GhostBatchNormalization"
            )
        self.virtual_batch_size = virtual_batch_size

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        axis = self.axis % len(x.shape)
        size = self.virtual_batch_size or x.shape[0]
        if size is None:  # the whole batch, of unknown size
            size = ops.shape(x)[0]
        elif x.shape[0] is not None and x.shape[0] % size:
            raise ValueError(
                f"GhostBatchNormalization {self.name!r}: the batch of "
                f"{x.shape[0]} examples is not a multiple of "
                f"virtual_batch_size={size}. Use a batch size (per replica) that "
                f"is a multiple of it."
            )
        groups = ops.reshape(x, (-1, size, *ops.shape(x)[1:]))
        # Reduce over everything but the group and the channel axis.
        axes = [a + 1 for a in range(len(x.shape)) if a != axis]
        mean, variance = ops.moments(groups, axes=axes, keepdims=True)
        inverse = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            inverse = inverse * ops.cast(self.gamma, x.dtype)
        offset = -mean * inverse
        if self.center:
            offset = offset + ops.cast(self.beta, x.dtype)
        outputs = ops.reshape(groups * inverse + offset, ops.shape(x))

        batch_mean = _replica_mean(ops.reshape(ops.mean(mean, axis=0), (-1,)))
        batch_variance = _replica_mean(ops.reshape(ops.mean(variance, axis=0), (-1,)))
        for moving, value in (
            (self.moving_mean, batch_mean),
            (self.moving_variance, batch_variance),
        ):
            moving.assign(
                ops.cast(moving, x.dtype) * self.momentum
                + value * (1.0 - self.momentum)
            )
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "virtual_batch_size": self.virtual_batch_size}


def _replica_mean(value):
    """The mean of `value` over the replicas of a TensorFlow distribution strategy."""
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.MEAN, value)

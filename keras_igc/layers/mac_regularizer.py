import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_igc")
class MACRegularizer(keras.layers.Layer):
    """Adds MSGC's MAC loss and reports a network's expected MACs.

    Called on `[outputs, macs_1, ..., macs_k]` (the per-sample MACs that
    `MSGCConv2D` layers return), it returns `outputs` unchanged and adds the
    loss `weight * max(0, MACs / dense_macs - tau)`, with
    `MACs = static_macs + mean over the batch of sum(macs_i)`. `tau` is a
    non-trainable variable that `keras_igc.msgc.MACTargetScheduler` moves
    from 1 to the target during training. The batch's MACs (millions) and
    their ratio to the dense network are kept in the non-trainable variables
    `last_macs` and `last_ratio`; a `keras_igc.msgc.MSGCModel` (what
    `msgc.convert` and the MSGC hosts return) reports them as the metrics
    `macs` and `mac_ratio` on every backend, for training and validation.

    Args:
        dense_macs: MACs of the dense network (the ratio's denominator).
        static_macs: MACs of the layers that masks do not change (stem,
            classifier, shortcuts).
        weight: the loss weight lambda (MSGC: 30).
        **kwargs: base layer keyword arguments.
    """

    def __init__(self, dense_macs, static_macs=0, weight=30.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(dense_macs, int | float) or dense_macs <= 0:
            raise ValueError(
                f"MACRegularizer `dense_macs` must be a positive number. Received: "
                f"dense_macs={dense_macs!r}."
            )
        self.dense_macs = float(dense_macs)
        self.static_macs = float(static_macs)
        self.weight = float(weight)
        self.tau = self.add_weight(
            shape=(), initializer="ones", trainable=False, name="tau"
        )
        # Variables, not metrics: a layer may update its variables in `call`
        # on every backend (JAX's stateless steps included), not its metrics.
        self.last_macs = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="last_macs"
        )
        self.last_ratio = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="last_ratio"
        )

    def call(self, inputs):
        outputs, *macs = inputs
        if not macs:
            raise ValueError(
                "MACRegularizer needs [outputs, macs_1, ...]: pass the `macs` "
                "tensors that MSGCConv2D layers return."
            )
        total = self.static_macs + ops.mean(ops.sum(ops.stack(macs, axis=1), axis=1))
        ratio = total / self.dense_macs
        self.add_loss(self.weight * ops.relu(ratio - ops.cast(self.tau, ratio.dtype)))
        self.last_macs.assign(ops.cast(ops.stop_gradient(total) / 1e6, "float32"))
        self.last_ratio.assign(ops.cast(ops.stop_gradient(ratio), "float32"))
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "dense_macs": self.dense_macs,
            "static_macs": self.static_macs,
            "weight": self.weight,
        }

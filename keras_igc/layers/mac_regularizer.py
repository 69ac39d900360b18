import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_igc")
class MACRegularizer(keras.layers.Layer):
    """Adds MSGC's MAC loss and reports a network's MACs, as the release counts.

    Called on `[outputs, gates_1, ..., gates_k]` (the `(batch, heads, C_in)`
    gates that the network's `MSGCConv2D` layers return: sampled in training,
    thresholded at inference), it returns `outputs` unchanged and adds the loss
    `weight * max(0, MACs / dense_macs - tau)`, where, as in the MSGC release's
    `main_dist.py`,

        MACs = static_macs + sum_i mean(gates_i) * macs_i - bonus.

    `convolutions[i] = {"macs": macs_i, "heads": H_i}`: the cost of masked
    convolution `i` with every gate open (the release counts the BatchNorm
    after it and the attention products in it too). `bonuses` credit work that
    no head reads (detached from the gradient, as in the release):

    - `{"reader": j, "producer": i}`: convolution `i`'s output channels that
      no head of `j` reads; head `h` of `i` owns a slice of them, so the credit
      is `sum_h mean(gates_i[:, h]) * macs_i / H_i * mean over the slice of
      prod over j's heads of (1 - gates_j)`;
    - `{"reader": j, "upstream_macs": U}`: `U * mean over channels of
      prod over j's heads of (1 - gates_j)` (MobileNetV2: the expansion and
      depthwise work of hidden channels no head reads).

    The means run over the batch, as the release takes them (so a batch's
    MACs are not the mean of its samples'); `count_macs(..., per_sample=True)`
    gives each sample's own. `tau` is a non-trainable variable that
    `keras_igc.msgc.MACTargetScheduler` moves from 1 to the target. The batch's
    MACs (millions) and their ratio to `dense_macs` are kept in the
    non-trainable variables `last_macs` and `last_ratio`; a
    `keras_igc.msgc.MSGCModel` reports them as the metrics `macs` and
    `mac_ratio` on every backend.

    Args:
        dense_macs: MACs of the dense network (the ratio's denominator).
        static_macs: MACs that masks do not change (stem, shortcuts,
            unmasked convolutions, classifier, the generators themselves).
        convolutions: one `{"macs", "heads"}` per gates input, in order.
        bonuses: see above; default none.
        weight: the loss weight lambda (MSGC: 30).
        **kwargs: base layer keyword arguments.
    """

    def __init__(
        self, dense_macs, static_macs=0, convolutions=(), bonuses=(), weight=30.0,
        **kwargs,
    ):  # fmt: skip
        super().__init__(**kwargs)
        if not isinstance(dense_macs, int | float) or dense_macs <= 0:
            raise ValueError(
                f"MACRegularizer `dense_macs` must be a positive number. Received: "
                f"dense_macs={dense_macs!r}."
            )
        self.dense_macs = float(dense_macs)
        self.static_macs = float(static_macs)
        self.convolutions = [_convolution(c) for c in convolutions]
        if not self.convolutions:
            raise ValueError(
                "MACRegularizer needs `convolutions`: one {'macs': ..., 'heads': "
                "...} per masked convolution whose gates it is called on."
            )
        self.bonuses = [_bonus(b, len(self.convolutions)) for b in bonuses]
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
        outputs, *gates = inputs
        self._check(gates)
        total = self.count_macs(gates)
        ratio = total / self.dense_macs
        self.add_loss(self.weight * ops.relu(ratio - ops.cast(self.tau, ratio.dtype)))
        self.last_macs.assign(ops.stop_gradient(total) / 1e6)
        self.last_ratio.assign(ops.stop_gradient(ratio))
        return outputs

    def count_macs(self, gates, per_sample=False):
        """The network's MACs for the gates of its masked convolutions.

        Differentiable in the gates (the bonus excepted). A scalar for the
        batch, as the release counts, or with `per_sample` one per sample.
        """

        def mean(x, axis=None):
            if per_sample:
                axes = tuple(range(1, len(x.shape))) if axis is None else axis
                return ops.mean(x, axis=axes)
            return ops.mean(x) if axis is None else ops.mean(x, axis=(0, *axis))

        gates = [ops.cast(g, "float32") for g in gates]
        total = self.static_macs
        for g, convolution in zip(gates, self.convolutions, strict=True):
            total = total + mean(g) * convolution["macs"]
        for bonus in self.bonuses:
            reader = ops.stop_gradient(gates[bonus["reader"]])
            unread = ops.prod(1.0 - reader, axis=1)  # (batch, channels)
            if "upstream_macs" in bonus:
                credit = mean(unread) * bonus["upstream_macs"]
            else:
                producer = ops.stop_gradient(gates[bonus["producer"]])
                convolution = self.convolutions[bonus["producer"]]
                heads = convolution["heads"]
                # Head h of the producer writes the h-th slice of its outputs.
                slices = ops.reshape(unread, (-1, heads, unread.shape[-1] // heads))
                credit = (
                    mean(producer, axis=(2,))
                    * mean(slices, axis=(2,))
                    * (convolution["macs"] / heads)
                )
                credit = ops.sum(credit, axis=-1)
            total = total - credit
        return total

    def _check(self, gates):
        if len(gates) != len(self.convolutions):
            raise ValueError(
                f"MACRegularizer {self.name!r} counts {len(self.convolutions)} "
                f"masked convolutions but was called on {len(gates)} gate "
                f"tensors: pass [outputs, gates_1, ..., gates_k] in the order of "
                f"`convolutions`."
            )
        for i, (g, c) in enumerate(zip(gates, self.convolutions, strict=True)):
            if len(g.shape) != 3 or g.shape[1] != c["heads"]:
                raise ValueError(
                    f"MACRegularizer {self.name!r}: gates {i} should be (batch, "
                    f"heads={c['heads']}, channels); received shape "
                    f"{tuple(g.shape)}."
                )

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "dense_macs": self.dense_macs,
            "static_macs": self.static_macs,
            "convolutions": [dict(c) for c in self.convolutions],
            "bonuses": [dict(b) for b in self.bonuses],
            "weight": self.weight,
        }


def _convolution(entry):
    if not isinstance(entry, dict) or set(entry) != {"macs", "heads"}:
        raise ValueError(
            f"Each MACRegularizer convolution is {{'macs': number, 'heads': int}}. "
            f"Received: {entry!r}."
        )
    if not isinstance(entry["macs"], int | float) or entry["macs"] < 0:
        raise ValueError(f"A convolution's `macs` must be >= 0. Received: {entry!r}.")
    return {"macs": float(entry["macs"]), "heads": int(entry["heads"])}


def _bonus(entry, count):
    keys = set(entry) if isinstance(entry, dict) else set()
    if keys not in ({"reader", "producer"}, {"reader", "upstream_macs"}):
        raise ValueError(
            f"Each MACRegularizer bonus is {{'reader': j, 'producer': i}} or "
            f"{{'reader': j, 'upstream_macs': number}}. Received: {entry!r}."
        )
    for key in keys & {"reader", "producer"}:
        if not isinstance(entry[key], int) or not 0 <= entry[key] < count:
            raise ValueError(
                f"A bonus' {key!r} indexes the {count} convolutions. Received: "
                f"{entry!r}."
            )
    return dict(entry)

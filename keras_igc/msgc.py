"""Learned grouped convolutions (MSGC): convert dense networks, train to a MAC target.

MSGC fine-tunes a dense network: chosen convolutions become `MSGCConv2D`
layers that start from the dense kernels, and a `MACRegularizer` at the output
adds `weight * max(0, MACs / dense MACs - tau)` to the loss while
`MACTargetScheduler` lowers `tau` from 1 to the target.

Two ways to build an MSGC network, each for its own use:

- `convert(model, rules)`: any dense Functional model of yours, its chosen
  convolutions rewritten with the same weights; MACs counted generically
  (the dense model's, each converted convolution scaled by its gates).
- `keras_igc.applications.MSGCResNet18`, `MSGCResNet50`, `MSGCMobileNetV2`
  (applications/msgc_hosts.py): the release's three networks, built layer
  by layer as the release wires them and counting MACs term by term as it
  does, so that its checkpoints load and its figures are reproduced.

`compile_for_msgc` sets up the published recipe; `plot_topology` draws which
input channels each head reads.
"""

import dataclasses
import re
import warnings

import keras
import numpy as np

from keras_igc import keras_internals
from keras_igc.complexity import model_complexity
from keras_igc.layers import MACRegularizer, MaskGenerator, MSGCConv2D
from keras_igc.optimizers import CoupledSGD, EpochCosineDecay
from keras_igc.plotting import plot_topology  # noqa: F401 (msgc.plot_topology)
from keras_igc.validation import finite_float, positive_int


def convert(
    model, rules, weight=30.0, name=None, reference=None, implementation="auto"
):  # fmt: skip
    """Rewrite a dense Functional model into an MSGC model with the same weights.

    Args:
        model: a built Functional model (e.g. a `keras.applications` network).
        rules: `rules(layer)` returns `None` to keep a layer, or for a
            `Conv2D` to replace a dict of `MSGCConv2D` arguments (`heads`,
            `squeeze`, `attention`, `granularity`) plus optionally
            `"source"`: the name of the layer whose *input* the masks are
            computed from (default: the convolution's own input), and
            `"upstream_macs"`: the work that produced the convolution's input
            channels, credited back for the channels no head reads.
        weight: the MAC loss weight lambda.
        name: name of the new model (default: the old one's + "_msgc").
        reference: for a `model` built without a fixed input size, the same
            network (same layer names) built on one, e.g. 224x224: MACs are
            counted per image at that size (the MSGC paper's accounting),
            whatever size the model then runs at.
        implementation: the MSGC layers' inference form (`MSGCConv2D`:
            `"auto"`, `"masked"` or `"gather"`), unless a rule's dict says.

    Returns:
        An `MSGCModel` whose output goes through a `MACRegularizer` and whose
        `MSGCConv2D` kernels are the dense kernels: with every mask open it
        computes the dense model's function. Its MACs: the dense model's
        (`model_complexity`), each converted convolution scaled by the mean of
        its gates (plus its attention products), plus the generators (pooling
        and the two 1x1 layers with their BatchNorm), less the credited
        upstream work. The MSGC hosts of `keras_igc.applications` count
        exactly as the release does instead.
    """
    if not keras_internals.is_graph_model(model):
        raise ValueError(
            f"msgc.convert needs a Functional model; received "
            f"{type(model).__name__} {model.name!r}."
        )
    options = _chosen_convolutions(model, rules)
    clone, gates = _clone_with_gates(model, options, implementation)
    reference = model if reference is None else reference
    dense_macs = model_complexity(reference)["macs"]
    static_macs, convolutions, bonuses = _mac_ledger(
        clone, reference, options, dense_macs
    )
    (outputs,) = clone.outputs
    outputs = MACRegularizer(
        dense_macs, static_macs, convolutions, bonuses, weight=weight,
        name="mac_regularizer",
    )([outputs, *gates])  # fmt: skip
    inputs = clone.inputs[0] if len(clone.inputs) == 1 else clone.inputs
    return MSGCModel(inputs, outputs, name=name or f"{model.name}_msgc")


def _chosen_convolutions(model, rules):
    """`{layer name: the rule's dict}` of the convolutions to convert."""
    if not callable(rules):
        raise ValueError(
            f"msgc.convert's `rules` is a function of a layer that returns None "
            f"or a dict of MSGCConv2D arguments. Received: {rules!r}."
        )
    options = {}
    for layer in model.layers:
        chosen = rules(layer)
        if chosen is None:
            continue
        if type(layer) is not keras.layers.Conv2D or layer.groups != 1:
            raise ValueError(
                f"msgc.convert can replace dense Conv2D layers only; the rules "
                f"chose {type(layer).__name__} {layer.name!r}."
            )
        options[layer.name] = dict(chosen)
    if not options:
        raise ValueError(
            f"The rules chose no convolution of {model.name!r} to convert."
        )
    return options


def _clone_with_gates(model, options, implementation):
    """`(clone, gates)`: `model` with each chosen convolution an `MSGCConv2D`
    of the same weights, and the gates tensors those layers output."""
    inputs_of, gates = {}, []

    def clone_layer(layer):
        if layer.name not in options:
            return type(layer).from_config(layer.get_config())
        arguments = {
            k: v for k, v in options[layer.name].items()
            if k not in ("source", "upstream_macs")
        }  # fmt: skip
        return MSGCConv2D(
            layer.filters, layer.kernel_size, strides=layer.strides,
            padding=layer.padding, use_bias=layer.use_bias, name=layer.name,
            **{"implementation": implementation, **arguments},
        )  # fmt: skip

    def call_layer(layer, *args, **kwargs):
        inputs_of[layer.name] = args[0]
        if layer.name not in options:
            return layer(*args, **kwargs)
        source = options[layer.name].get("source")
        x = args[0] if source is None else [args[0], inputs_of[source]]
        outputs, layer_gates = layer(x)
        gates.append(layer_gates)
        return outputs

    clone = keras.models.clone_model(
        model, clone_function=clone_layer, call_function=call_layer
    )
    for layer in clone.layers:
        original = model.get_layer(layer.name) if layer.weights else None
        if isinstance(layer, MSGCConv2D):
            layer.conv.set_weights(original.get_weights())
        elif original is not None:
            layer.set_weights(original.get_weights())
    return clone, gates


def _mac_ledger(clone, reference, options, dense_macs):
    """`(static MACs, convolutions, bonuses)` of `MACRegularizer`, per image
    at `reference`'s size: the dense model's MACs less the converted
    convolutions (which the gates scale), plus the generators."""
    static_macs, convolutions, bonuses = dense_macs, [], []
    msgc_layers = [l for l in clone.layers if isinstance(l, MSGCConv2D)]
    for index, layer in enumerate(msgc_layers):
        at_reference = reference.get_layer(layer.name)
        height, width, channels = at_reference.input.shape[1:4]
        conv = layer.dense_macs_at(at_reference.output.shape[1:3])
        attention = layer.attention * layer.heads * channels * height * width
        convolutions.append({"macs": conv + attention, "heads": layer.heads})
        static_macs -= conv
        source = options[layer.name].get("source")
        source_shape = (
            at_reference.input.shape if source is None
            else reference.get_layer(source).input.shape
        )  # fmt: skip
        pool = source_shape[1] * source_shape[2] * source_shape[3]
        static_macs += pool + layer.mask_generator.macs(source_shape[3])
        if layer.attention:
            static_macs += pool + layer.attention_generator.macs(source_shape[3])
        upstream = options[layer.name].get("upstream_macs")
        if upstream:
            bonuses.append({"reader": index, "upstream_macs": upstream})
    return static_macs, convolutions, bonuses


def inference_macs(model, x):
    """Per-sample MACs of an MSGC model at inference, counted as the release
    counts (the deterministic gates of each sample).

    Args:
        model: an `MSGCModel` (`msgc.convert`, the MSGC hosts), or a model
            that holds one (a `keras_igc.hub` MSGC task or detector).
        x: a batch of inputs.

    Returns:
        A NumPy array of one MAC count per sample.
    """
    regularizer = _regularizer(model)
    owner = keras_internals.graph_owner(model, regularizer)
    probe = keras.Model(owner.input, list(keras_internals.call_inputs(regularizer)[1:]))
    gates = probe(x, training=False)
    gates = gates if isinstance(gates, list | tuple) else [gates]
    return keras.ops.convert_to_numpy(regularizer.count_macs(gates, per_sample=True))


def inference_gates(model, x, batch_size=32):
    """`{layer name: gates (examples, heads, C_in)}`: the deterministic 0/1
    gates of every MSGC layer on the images `x` (each layer's second
    output), `batch_size` images at a time."""
    layers = _msgc_layers(model)
    owner = keras_internals.graph_owner(model, layers[0])
    probe = keras.Model(owner.input, [layer.output[1] for layer in layers])
    parts = []
    for start in range(0, len(x), batch_size):
        gates = probe(x[start : start + batch_size], training=False)
        parts.append(gates if isinstance(gates, list | tuple) else [gates])
    return {
        layer.name: np.concatenate([keras.ops.convert_to_numpy(p[i]) for p in parts])
        for i, layer in enumerate(layers)
    }


def open_gates(model, logit=100.0):
    """Open every gate of an MSGC model: the mask generators' last bias set to
    `logit`, so the network computes the dense network it started from (e.g.
    to check that dense weights loaded). Attention generators are left as
    they are."""
    for layer in keras_internals.all_layers(model):
        if isinstance(layer, MaskGenerator) and not layer.attention:
            layer.expand.bias.assign(
                np.full(layer.expand.units, logit, layer.expand.bias.dtype)
            )


def _regularizer(model):
    found = [
        l for l in keras_internals.all_layers(model) if isinstance(l, MACRegularizer)
    ]
    if len(found) != 1:
        raise ValueError(
            f"{model.name!r} has {len(found)} MACRegularizer layers; MAC counts "
            f"need exactly one (build the model with msgc.convert or an MSGC "
            f"application)."
        )
    return found[0]


class MACMetrics:
    """Mixin: a model that reports its `MACRegularizer`s' MACs as metrics.

    Put before a `keras.Model` subclass (`class M(MACMetrics, keras.Model)`):
    after each forward pass it averages the `last_macs` (millions) and
    `last_ratio` of every `MACRegularizer` it holds, nested models included,
    into the metrics `macs` and `mac_ratio`, so `fit` and `evaluate` report
    them on TensorFlow, JAX and PyTorch alike. `MSGCModel` and keras_igc.hub's
    MSGC tasks are built on it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.macs_tracker = keras.metrics.Mean(name="macs")
        self.ratio_tracker = keras.metrics.Mean(name="mac_ratio")

    def compute_loss(self, *args, **kwargs):
        loss = super().compute_loss(*args, **kwargs)
        # Here the forward pass's variable updates are visible on every backend.
        for layer in keras_internals.all_layers(self):
            if isinstance(layer, MACRegularizer):
                self.macs_tracker.update_state(layer.last_macs)
                self.ratio_tracker.update_state(layer.last_ratio)
        return loss


@keras.saving.register_keras_serializable(package="keras_igc")
class MSGCModel(MACMetrics, keras.Model):
    """A Functional model whose `MACRegularizer` MACs are metrics (`MACMetrics`).

    Built like `keras.Model(inputs, outputs)` (`msgc.convert` does); it
    reports `macs` and `mac_ratio` in `fit` and `evaluate`, and saves and
    loads as a `.keras` file like any Functional model.
    """


def copy_weights_by_name(source, target, require_all=False):
    """Copy weights from `source` into the same-named layers of `target`.

    An `MSGCConv2D` takes a dense `Conv2D`'s kernel (same shape); its
    generators keep their weights. Layers that only one model has are skipped
    (with `require_all`, a `target` layer that `source` lacks is an error);
    shapes that differ raise. Every shape is checked before any weight is
    copied.

    Returns:
        The names of the layers copied.
    """
    by_name = {layer.name: layer for layer in source.layers if layer.weights}
    lacking = [
        layer.name for layer in target.layers
        if layer.trainable_weights and layer.name not in by_name
    ]  # fmt: skip
    if require_all and lacking:
        raise ValueError(
            f"{source.name!r} has no layers named {lacking[:5]} (of "
            f"{len(lacking)} that {target.name!r} needs): dense weights copy by "
            f"layer name, so build the dense network with the host's names "
            f"(see the host's `dense_weights` argument)."
        )
    plan = []
    for layer in target.layers:
        if layer.name not in by_name:
            continue
        into = layer.conv if isinstance(layer, MSGCConv2D) else layer
        weights = by_name[layer.name].get_weights()
        shapes = [tuple(w.shape) for w in into.weights]
        if shapes != [w.shape for w in weights]:
            raise ValueError(
                f"Layer {layer.name!r}: the source has weights of shapes "
                f"{[w.shape for w in weights]} and the target {shapes}. Build "
                f"both networks with the same input shape, classes and width."
            )
        plan.append((into, weights, layer.name))
    for into, weights, _ in plan:
        into.set_weights(weights)
    return [name for _, _, name in plan]


class MACTargetScheduler(keras.callbacks.Callback):
    """Moves the MAC regularizer's `tau` linearly from 1 to `target`.

    Over the first `fraction` of the training steps (MSGC: half), then holds
    it at `target`; set before each step from the optimizer's step count, as
    the release sets it from its progress (`main_dist.py`).

    Args:
        target: MAC ratio to reach, in (0, 1].
        fraction: part of training over which tau decreases, in (0, 1].
        total_steps: the steps of the whole training; default: the `fit`
            call's epochs times its steps (give it where a run is several
            calls, e.g. one that resumes mid-epoch).
    """

    def __init__(self, target, fraction=0.5, total_steps=None):
        super().__init__()
        for value, what in ((target, "target"), (fraction, "fraction")):
            if not isinstance(value, int | float) or not 0 < value <= 1:
                raise ValueError(
                    f"MACTargetScheduler `{what}` must be in (0, 1] (a ratio of "
                    f"the dense network's MACs / of training). Received: "
                    f"{what}={value!r}."
                )
        self.target = float(target)
        self.fraction = float(fraction)
        if total_steps is not None:
            total_steps = positive_int(total_steps, "total_steps", "MACTargetScheduler")
        self.total_steps = total_steps
        self._regularizers = []

    def on_train_begin(self, logs=None):
        self._regularizers = [
            layer
            for layer in keras_internals.all_layers(self.model)
            if isinstance(layer, MACRegularizer)
        ]
        if not self._regularizers:
            raise ValueError(
                "MACTargetScheduler found no MACRegularizer in the model; build "
                "it with keras_igc.msgc.convert or an MSGC application."
            )
        total = self.total_steps
        if total is None:
            total = self.params["epochs"] * (self.params["steps"] or 1)
        self._total = max(1, total)

    def on_train_batch_begin(self, batch, logs=None):
        # The optimizer's step, not a count of this call's batches: a resumed
        # run (BackupAndRestore) continues the schedule where it stopped.
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        progress = min(1.0, step / (self.fraction * self._total))
        tau = 1.0 - (1.0 - self.target) * progress
        for layer in self._regularizers:
            layer.tau.assign(tau)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["tau"] = float(keras.ops.convert_to_numpy(self._regularizers[0].tau))


def mask_variables(model):
    """The trainable weights of the mask generators (not the attention ones)."""
    return [
        variable
        for variable in model.trainable_variables
        if re.search(MASK_GENERATOR_PATTERN, variable.path)
    ]


# The release's parameter groups (`main_dist.py`), as rules on variable paths:
# names holding "mask" (the mask generators, their BatchNorm included) train at
# the mask rate without decay; BatchNorm scales and offsets at the backbone rate
# without decay; everything else (convolutions, the classifier, the attention
# generators) at the backbone rate with decay.
MASK_GENERATOR_PATTERN = r"(^|/)mask_generator/"
NORMALIZATION_PATTERN = r"/(gamma|beta)$"


@dataclasses.dataclass(frozen=True)
class ReleaseRecipe:
    """One host's run in the MSGC release (`scripts.sh`, `main_dist.py`)."""

    epochs: int
    target: float  # tau at the end of the MAC schedule
    batch_size: int = 256  # 2 GPUs x 128 (torch.distributed.launch, -b 128)
    mask_learning_rate: float = 0.075  # --lr
    backbone_learning_rate: float = 0.015  # --lr x --lr-mul 0.2
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    mac_weight: float = 30.0  # --lmd
    target_fraction: float = 0.5  # tau reaches the target at --pstop 0.5
    devices: int = 2  # each GPU's BatchNorm normalises its 128 images

    def scaled(self, batch_size):
        """The recipe at another batch size: both rates scale linearly."""
        factor = batch_size / self.batch_size
        return dataclasses.replace(
            self,
            batch_size=batch_size,
            mask_learning_rate=self.mask_learning_rate * factor,
            backbone_learning_rate=self.backbone_learning_rate * factor,
        )


# (host, attention) -> the release's training command in scripts.sh.
RELEASE_RECIPES = {
    ("MSGCResNet18", False): ReleaseRecipe(epochs=120, target=0.49),
    ("MSGCResNet18", True): ReleaseRecipe(epochs=120, target=0.488),
    ("MSGCResNet50", False): ReleaseRecipe(epochs=120, target=0.457),
    ("MSGCResNet50", True): ReleaseRecipe(epochs=120, target=0.457),
    ("MSGCMobileNetV2", False): ReleaseRecipe(epochs=150, target=0.65),
    ("MSGCMobileNetV2", True): ReleaseRecipe(epochs=150, target=0.628),
}


def release_recipe(host, attention=False):
    """The MSGC release's recipe for a host (`applications.HOSTS`)."""
    key = (host, bool(attention))
    if key not in RELEASE_RECIPES:
        hosts = sorted({h for h, _ in RELEASE_RECIPES})
        raise ValueError(f"Unknown MSGC host {host!r}. Choose one of {hosts}.")
    return RELEASE_RECIPES[key]


def compile_for_msgc(
    model,
    steps_per_epoch,
    epochs,
    mask_learning_rate=0.075,
    backbone_learning_rate=0.015,
    weight_decay=1e-4,
    label_smoothing=0.1,
    warmup_epochs=0,
):
    """Compile with the MSGC release's recipe (`main_dist.py`, `utils.py`).

    `keras_igc.optimizers.CoupledSGD`: Nesterov momentum 0.9 with coupled L2
    `weight_decay` (as `torch.optim.SGD`); the rate follows the release's
    per-epoch cosine (`EpochCosineDecay`, optional linear warm-up); the mask
    generators train at `mask_learning_rate` without decay, BatchNorm at
    `backbone_learning_rate` without decay, and every other weight (the
    attention generators included) at `backbone_learning_rate` with decay.
    The loss is label-smoothed cross-entropy (labels as integers), plus the MAC
    loss of the model's `MACRegularizer`; the metric is accuracy.

    The defaults are the release's (`release_recipe(host)` has each host's
    epochs, batch and MAC target: 120 epochs, MobileNetV2 150; a batch of
    2 x 128; targets 0.49 / 0.457 / 0.65 for ResNet-18 / ResNet-50 /
    MobileNetV2 without attention, 0.488 / 0.457 / 0.628 with it). Add
    `MACTargetScheduler(target)` to `fit`'s callbacks.
    """
    owner = "compile_for_msgc"
    if not isinstance(model, MACMetrics):
        warnings.warn(
            f"{model.name!r} is a {type(model).__name__}: it trains, but its fit "
            f"logs will not show the MACs. Build it with "
            f"keras_igc.msgc.MSGCModel(inputs, outputs) (msgc.convert does).",
            stacklevel=2,
        )
    positive_int(steps_per_epoch, "steps_per_epoch", owner)
    positive_int(epochs, "epochs", owner)
    mask_learning_rate = finite_float(
        mask_learning_rate, "mask_learning_rate", owner, positive=True
    )
    backbone_learning_rate = finite_float(
        backbone_learning_rate, "backbone_learning_rate", owner, positive=True
    )
    optimizer = CoupledSGD(
        EpochCosineDecay(
            backbone_learning_rate, epochs, steps_per_epoch, warmup_epochs
        ),
        momentum=0.9,
        nesterov=True,
        weight_decay=weight_decay,
        no_decay=[MASK_GENERATOR_PATTERN, NORMALIZATION_PATTERN],
        learning_rate_multipliers={
            MASK_GENERATOR_PATTERN: mask_learning_rate / backbone_learning_rate
        },
        name="msgc_sgd",
    )
    model.compile(
        optimizer=optimizer,
        loss=_SmoothedSparseCrossEntropy(label_smoothing),
        metrics=["accuracy"],
    )
    return model


@keras.saving.register_keras_serializable(package="keras_igc")
class _SmoothedSparseCrossEntropy(keras.losses.Loss):
    """Label-smoothed cross-entropy for integer labels and probabilities."""

    def __init__(self, label_smoothing=0.1, name="smoothed_crossentropy"):
        super().__init__(name=name)
        self.label_smoothing = label_smoothing

    def get_config(self):
        # Saved with the model's compile config, so a reloaded model trains on.
        return {"label_smoothing": self.label_smoothing, "name": self.name}

    def call(self, y_true, y_pred):
        classes = keras.ops.shape(y_pred)[-1]
        y_true = keras.ops.one_hot(
            keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), classes
        )
        return keras.losses.categorical_crossentropy(
            y_true, y_pred, label_smoothing=self.label_smoothing
        )


def head_masks(model, x):
    """`{layer name: masks (batch, heads, C_in)}` of every MSGC layer on `x`."""
    layers = _msgc_layers(model)
    # One pass computes every MSGC layer's inputs.
    owner = keras_internals.graph_owner(model, layers[0])
    probe = keras.Model(
        owner.input, [keras_internals.call_inputs(layer) for layer in layers]
    )
    inputs = probe(x, training=False)
    return {
        layer.name: keras.ops.convert_to_numpy(
            layer.masks(tensors if len(tensors) > 1 else tensors[0])
        )
        for layer, tensors in zip(layers, inputs, strict=True)
    }


def msgc_layers(model):
    """The `MSGCConv2D` layers of `model`, nested ones included (may be none)."""
    return [l for l in keras_internals.all_layers(model) if isinstance(l, MSGCConv2D)]


def _msgc_layers(model):
    layers = msgc_layers(model)
    if not layers:
        raise ValueError(f"{model.name!r} has no MSGCConv2D layer.")
    return layers

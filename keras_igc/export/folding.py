"""A clone of a model that every runtime can run, with BatchNorm folded in.

`prepare` clones the model for one runtime: each layer that has execution
forms takes the one `keras_igc.forms.choose` gives for that runtime (never
Keras' native grouped convolution, an XLA-compiled function that tf2onnx
turns into an invalid graph and CPU serving may not compile), and each
BatchNorm that follows a convolution becomes a scale and a bias of that
convolution. An IGC block whose form is `"dense"` becomes a `Conv2D` with its
dense-equivalent kernel (only where a BatchNorm folds into it: otherwise the
extra weights would buy nothing); every other grouped `Conv2D` becomes a
`GroupConv2D` with the same weights.
"""

import dataclasses

import keras
import numpy as np

from keras_igc import forms, inference_folding, keras_internals, validation
from keras_igc import ops as igc_ops
from keras_igc.complexity import model_complexity
from keras_igc.layers import GroupConv2D, IGCConv2D
from keras_igc.traced_model import TracedModel

BLOCK_FORMS = forms.OVERRIDES["igc_block"]
RUNTIMES = forms.EXPORT_RUNTIMES


@dataclasses.dataclass
class FoldingReport:
    """What `prepare` changed.

    Attributes:
        folded: one dict per BatchNorm folded away: `batch_norm`, `into` (the
            layer before it) and `form` ("conv", or for an IGC block its
            form).
        paths: the execution path of each IGC block and grouped convolution.
        before, after: `model_complexity` of the model and its prepared clone.
        blocks: one dict per IGC block: `layer`, `form`, `why`, `source` (the
            results file of the rule) and `primary_groups` (the groups its
            primary runs as in the artifact: fewer than L where narrow
            partitions are merged; None without a grouped primary).
        runtime: the runtime the forms were chosen for (None: any).
        msgc_layers: one dict per `MSGCConv2D`: `layer`, the inference
            `form` it runs in this artifact, `why` and `source`.
        grouped_convs: one dict per other grouped convolution: `layer`, its
            `form` (a path of `keras_igc.forms.PATHS`), `why`, `source` and
            `groups` (as run in the artifact; None unless `form` is
            "grouped").
    """

    folded: list
    paths: dict
    before: dict
    after: dict
    blocks: list = dataclasses.field(default_factory=list)
    runtime: str | None = None
    msgc_layers: list = dataclasses.field(default_factory=list)
    grouped_convs: list = dataclasses.field(default_factory=list)

    def summary(self):
        folded = _counts(entry["form"] for entry in self.folded)
        blocks = _counts(entry["form"] for entry in self.blocks)
        msgc = _counts(entry["form"] for entry in self.msgc_layers)
        grouped = _counts(entry["form"] for entry in self.grouped_convs)
        return (
            f"IGC blocks: {blocks or 'none'}; "
            + (f"MSGC layers: {msgc}; " if msgc else "")
            + (f"grouped convolutions: {grouped}; " if grouped else "")
            + f"folded {len(self.folded)} BatchNorm layers ({folded or 'none'}); "
            f"params {self.before['total_params']:,} -> "
            f"{self.after['total_params']:,}, MACs {self.before['macs']:,} -> "
            f"{self.after['macs']:,}"
        )


def _counts(names):
    """ "2 dense, 1 grouped"."""
    names = list(names)
    return ", ".join(f"{names.count(n)} {n}" for n in sorted(set(names)))


def prepare(
    model, fold=True, *, runtime=None, block_form="auto", grouped_conv_form="auto"
):
    """A clone of `model` that exports and runs on any runtime, with equal outputs.

    Each IGC block, grouped convolution, MSGC layer and channel shuffle takes
    the form `keras_igc.forms.choose(layer, runtime, overrides)` gives. With
    `fold`, each BatchNormalization that directly follows a `Conv2D`,
    `GroupConv2D`, `DepthwiseConv2D` or `IGCConv2D` (and is that layer's only
    consumer) folds into it as a scale of the output channels and a bias; the
    BatchNorm becomes an `Identity`. Folding uses the moving statistics, so
    the clone equals the model in inference mode. Mixed-precision layers
    become float32, which every converter supports.

    Args:
        model: a built Functional or Sequential Keras model.
        fold: fold BatchNorm layers.
        runtime: the runtime the artifact is for (`RUNTIMES`), whose measured
            rules `"auto"` follows; None for any converter (the Keras CPU rule
            without grouped kernels).
        block_form: every IGC block's form: `"auto"` (the rule),
            `"auto_sparse"` (the rule, but never the dense-equivalent kernel),
            or one of `keras_igc.forms.FORMS["igc_block"]` ("dense" only where
            a BatchNorm folds into the block, else "igc").
        grouped_conv_form: `"auto"`, or one path of `keras_igc.forms.PATHS`
            for every grouped convolution that is not part of an IGC block.

    Returns:
        `(clone, FoldingReport)`.
    """
    check_model(model)
    target = _check_runtime(runtime)
    overrides = {"igc_block": block_form, "grouped_conv": grouped_conv_form}
    for kind, value in overrides.items():
        forms.check_override(kind, value)
    if isinstance(model, keras.Sequential):
        # clone_model replaces calls (BatchNorm by Identity) in graphs only.
        (inputs,), (outputs,) = model.inputs, model.outputs
        model = keras.Model(inputs, outputs, name=model.name)
    pairs = batch_norm_pairs(model) if fold else {}
    choices = _top_level_choices(model, target, overrides, pairs)
    clone = _clone(model, pairs, choices)
    if isinstance(clone, TracedModel):
        # The artifact's graph is the one prepared here (each BatchNorm folded
        # into weights, or with `fold=False` kept), not Keras' inference fold.
        clone.fold_batch_norm = False
    _copy_weights(model, clone, pairs)
    chosen = _set_forms(clone, target, overrides, choices)
    # Keras' exporters want a model that has run once.
    clone(np.zeros((1, *model.input_shape[1:]), "float32"))
    report = FoldingReport(
        folded=[
            {"batch_norm": bn.name, "into": name, "form": _folded_form(choices, name)}
            for name, bn in pairs.items()
        ],
        paths=_execution_paths(clone),
        before=model_complexity(model),
        after=model_complexity(clone),
        runtime=runtime,
        **_report_entries(chosen),
    )
    return clone, report


def _check_runtime(runtime):
    if runtime not in (None, *RUNTIMES):
        raise ValueError(
            f"`runtime` must be None or one of {RUNTIMES}. Received: "
            f"runtime={runtime!r}."
        )
    return runtime or "converter"


def _top_level_choices(model, runtime, overrides, pairs):
    """`{name: Choice}` of the model's IGC blocks and grouped convolutions,
    which decide how they are cloned: a dense block becomes a `Conv2D`, a
    grouped `Conv2D` a `GroupConv2D`."""
    choices = {}
    for layer in keras_internals.all_layers(model):
        if isinstance(layer, IGCConv2D):
            choice = forms.choose(layer, runtime, overrides)
            if layer.name not in pairs:
                choice = forms.sparse(
                    choice, forms.describe(layer)[1], "no BatchNorm folds into it"
                )
            choices[layer.name] = choice
    for layer in model.layers:  # the layers `clone_model` sees
        if is_grouped_conv(layer):
            choices[layer.name] = forms.choose(layer, runtime, overrides)
    return choices


def _clone(model, pairs, choices):
    """The clone, folded BatchNorms as `Identity`, dense blocks as `Conv2D`."""
    folded_norms = {bn.name for bn in pairs.values()}

    def clone_layer(layer):
        if layer.name in folded_norms:
            return keras.layers.Identity(name=layer.name)
        config = layer.get_config()
        if _is_mixed(layer):
            config["dtype"] = "float32"
        if layer.name in pairs:  # the BatchNorm's shift becomes a bias
            config["use_bias"] = True
        if isinstance(layer, IGCConv2D) and choices[layer.name].form == "dense":
            return keras.layers.Conv2D.from_config(_dense_config(layer))
        if is_grouped_conv(layer):
            return GroupConv2D.from_config(config)
        return type(layer).from_config(config)

    def call_layer(layer, *args, **kwargs):
        if layer.name in folded_norms:
            # BatchNorm's call takes `training` and `mask`; Identity does not.
            return layer(args[0])
        return layer(*args, **kwargs)

    return keras.models.clone_model(
        model, clone_function=clone_layer, call_function=call_layer
    )


def _copy_weights(model, clone, pairs):
    for layer in clone.layers:
        if not layer.weights:  # inputs, activations, folded BatchNorms
            continue
        original = model.get_layer(layer.name)
        if layer.name in pairs:
            layer.set_weights(_folded_weights(original, pairs[layer.name], layer))
        else:
            layer.set_weights(original.get_weights())


def _set_forms(clone, runtime, overrides, choices):
    """Give every layer of `clone` that has forms its `Choice` (after the
    weights: a merged kernel is taken from them); `[(layer, Choice)]` of the
    IGC blocks (a dense one as its `Conv2D`), grouped convolutions and MSGC
    layers, for the report."""
    top = {id(layer) for layer in clone.layers}
    chosen = []
    for layer in keras_internals.all_layers(clone):
        decided = id(layer) in top or isinstance(layer, IGCConv2D)
        choice = choices.get(layer.name) if decided else None
        if hasattr(layer, "set_execution_form"):
            choice = choice or forms.choose(layer, runtime, overrides)
            layer.set_execution_form(choice)
        if choice is not None and choice.kind != "shuffle":
            chosen.append((layer, choice))
    return chosen


def _report_entries(chosen):
    """The report's `blocks`, `grouped_convs` and `msgc_layers` entries."""
    entries = {"igc_block": [], "grouped_conv": [], "msgc": []}
    for layer, choice in chosen:
        entry = {"layer": layer.name, **choice.as_dict()}
        grouped = choice.form in ("grouped", "grouped_primary")
        if choice.kind == "igc_block":
            groups = layer.primary_partitions // choice.merge if grouped else None
            entry["primary_groups"] = groups
        elif choice.kind == "grouped_conv":
            groups = layer.groups // choice.merge if choice.form == "grouped" else None
            entry["groups"] = groups
        entries[choice.kind].append(entry)
    return {
        "blocks": entries["igc_block"],
        "grouped_convs": entries["grouped_conv"],
        "msgc_layers": entries["msgc"],
    }


def _folded_form(choices, name):
    choice = choices.get(name)
    return "conv" if choice is None or choice.kind != "igc_block" else choice.form


def check_model(model):
    validation.graph_model(
        model, "Export", "export it with model.export() (no folding), or rebuild "
        "it with the functional API",
    )  # fmt: skip


def batch_norm_pairs(model):
    """`{producer name: BatchNormalization}` for every foldable pair (the
    rule of `inference_folding.batch_norm_pairs`)."""
    pairs = inference_folding.batch_norm_pairs(
        keras_internals.graph_nodes(model), model.outputs
    )
    return {producer.name: bn for producer, bn in pairs.items()}


def is_grouped_conv(layer):
    return (
        isinstance(layer, keras.layers.Conv2D)
        and layer.groups > 1
        and layer.data_format == "channels_last"
    )


def _dense_config(layer):
    return {
        "name": layer.name,
        "filters": layer.filters,
        "kernel_size": layer.kernel_size,
        "strides": layer.strides,
        "padding": layer.padding,
        "dilation_rate": layer.dilation_rate,
        "use_bias": True,
    }


def _folded_weights(layer, bn, clone):
    """Weights of `clone` equal to `layer` followed by `bn` in inference mode."""
    gamma, beta, mean, variance = (
        np.asarray(w, "float64") if w is not None else None
        for w in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)
    )
    channels = mean.shape[0]
    scale = (gamma if gamma is not None else 1.0) / np.sqrt(variance + bn.epsilon)
    shift = (beta if beta is not None else 0.0) - mean * scale
    if isinstance(layer, IGCConv2D):
        bias = layer.dense_equivalent_bias()
        if bias is None:
            bias = np.zeros(channels)
        else:  # a tensor (on PyTorch, one that needs grad)
            bias = np.asarray(keras.ops.convert_to_numpy(bias), "float64")
        if isinstance(clone, IGCConv2D):
            # The secondary kernel and bias are stored in permuted order:
            # output channel o is secondary channel order[o].
            L, M = layer.primary_partitions, layer.secondary_partitions
            order = np.asarray(igc_ops.output_bias(np.arange(channels), L, M))
            secondary_scale = np.empty(channels)
            secondary_scale[order] = scale
            secondary_bias = np.empty(channels)
            secondary_bias[order] = bias * scale + shift
            weights = [
                np.asarray(layer.primary.kernel),
                np.asarray(layer.secondary.kernel, "float64") * secondary_scale,
                secondary_bias,
            ]
        else:
            kernel = np.asarray(layer.dense_equivalent_kernel(), "float64")
            weights = [kernel * scale, bias * scale + shift]
    else:
        bias = np.asarray(layer.bias, "float64") if layer.use_bias else 0.0
        kernel = np.asarray(layer.kernel, "float64")
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            # Output channel c * multiplier + j is kernel[..., c, j].
            kernel = kernel * scale.reshape(kernel.shape[2:])
        else:
            kernel = kernel * scale
        weights = [kernel, bias * scale + shift]
    return [np.asarray(w, "float32") for w in weights]


def _execution_paths(model):
    return {
        layer.name: layer.active_implementation
        for layer in model.layers
        if isinstance(layer, IGCConv2D | GroupConv2D)
    }


def _is_mixed(layer):
    policy = getattr(layer, "dtype_policy", None)
    return policy is not None and policy.name.startswith("mixed")

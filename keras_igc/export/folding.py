"""A clone of a model that every runtime can run, with BatchNorm folded in.

The clone is built under `paths.portable_paths`: no layer takes Keras'
native grouped convolution (an XLA-compiled function that tf2onnx turns into
an invalid graph and CPU serving may not compile). Each IGC block takes the
form its target runtime runs fastest (`block_form`), and each BatchNorm that
follows a convolution becomes a scale and a bias of that convolution.

The forms of an IGC block, all exact:

- `"grouped"`: the block as the paper draws it: the primary as the runtime's
  grouped convolution (ONNX `Conv` with `group`, LiteRT's grouped
  `CONV_2D`), the permutation (reshape, transpose, reshape), the secondary as
  a grouped 1x1 convolution (the BatchNorm folded into it), the inverse
  permutation. The block's own MACs.
- `"grouped_primary"`: the primary grouped, then the permutation, secondary
  and inverse permutation as one dense 1x1 convolution: `G*G` MACs per pixel
  for the second half (M times the secondary's), no transposes.
- `"dense"`: one convolution with the block's dense-equivalent kernel (the
  BatchNorm folded in): `G*G*S` MACs per pixel, but a single kernel.
- `"igc"`: the primary as plain dense or depthwise convolutions
  (`paths.select_path` without grouped kernels), then the 1x1.

Every other grouped convolution (the IGC networks' 1x1 projection shortcuts,
`GroupConv2D`) takes one of `keras_igc.paths.PATHS` the same way
(`grouped_conv_form`): the runtime's own grouped convolution where it
measured faster than the block-diagonal dense one.
"""

import collections
import dataclasses

import keras
import numpy as np

from keras_igc import keras_internals, paths
from keras_igc import ops as igc_ops
from keras_igc.complexity import model_complexity
from keras_igc.layers import GroupConv2D, IGCConv2D, MSGCConv2D

DENSE_BLOCKS = ("auto", "always", "never")
BLOCK_FORMS = ("auto", "grouped", "grouped_primary", "dense", "igc")
# The forms whose primary is the runtime's grouped convolution.
GROUPED_PRIMARY_FORMS = ("grouped", "grouped_primary")
GROUPED_CONV_FORMS = paths.IMPLEMENTATIONS
RUNTIMES = ("savedmodel", "litert", "onnx")


@dataclasses.dataclass
class FoldingReport:
    """What `prepare` changed.

    Attributes:
        folded: one dict per BatchNorm folded away: `batch_norm`, `into` (the
            layer before it) and `form` ("conv", or for an IGC block its
            form: "grouped", "dense" or "igc").
        paths: the execution path of each IGC block and grouped convolution.
        before, after: `model_complexity` of the model and its prepared clone.
        blocks: one dict per IGC block: `layer`, `form`, `why` and
            `primary_groups` (the groups its primary runs as in the artifact:
            fewer than L where narrow partitions are merged; None without a
            grouped primary).
        runtime: the runtime the forms were chosen for (None: any).
        msgc_layers: one dict per `MSGCConv2D`: `layer`, the inference
            `form` it runs in this artifact and `why`.
        grouped_convs: one dict per other grouped convolution: `layer`, its
            `form` (a path of `keras_igc.paths`), `why` and `groups` (as run
            in the artifact; None unless `form` is "grouped").
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
    model,
    fold=True,
    dense_blocks="auto",
    *,
    runtime=None,
    block_form="auto",
    grouped_conv_form="auto",
):
    """A clone of `model` that exports and runs on any runtime, with equal outputs.

    Every IGC block takes the form `block_form` says (see the module's
    docstring), and every other grouped `Conv2D` becomes a `GroupConv2D` with
    the same weights on the path `grouped_conv_form` says. With
    `fold`, each BatchNormalization that directly follows a `Conv2D`,
    `GroupConv2D`, `DepthwiseConv2D` or `IGCConv2D` (and is that layer's
    only consumer) folds
    into it as a scale of the output channels and a bias; the BatchNorm
    becomes an `Identity`. Folding uses the moving statistics, so the clone
    equals the model in inference mode. Mixed-precision layers become
    float32, which every converter supports.

    Args:
        model: a built Functional or Sequential Keras model.
        fold: fold BatchNorm layers.
        dense_blocks: for IGC blocks with a folded BatchNorm: `"auto"`
            replaces the block by its dense-equivalent `Conv2D` where the CPU
            benchmarks found the dense kernel fastest (the rule of
            `IGCConv2D(implementation="auto")`), `"always"` or `"never"`.
            The dense form has more weights and MACs but runs as one
            convolution. `"always"` and `"never"` override `block_form`.
        runtime: the runtime the artifact is for (`RUNTIMES`), whose measured
            rule (`export_form`) `block_form="auto"` follows; None for the
            rule of the Keras CPU paths (dense where the dense kernel is
            small, else "igc").
        block_form: `"auto"`, or one form for every IGC block ("grouped",
            "dense" where a BatchNorm folds into the block, else "igc").
        grouped_conv_form: `"auto"` (`grouped_conv_form`'s measured rule for
            `runtime`), or one path of `keras_igc.paths.PATHS` for every
            grouped convolution that is not part of an IGC block.

    Returns:
        `(clone, FoldingReport)`.
    """
    check_model(model)
    if dense_blocks not in DENSE_BLOCKS:
        raise ValueError(
            f"`dense_blocks` must be one of {DENSE_BLOCKS}. Received: "
            f"dense_blocks={dense_blocks!r}."
        )
    if block_form not in BLOCK_FORMS:
        raise ValueError(
            f"`block_form` must be one of {BLOCK_FORMS}. Received: "
            f"block_form={block_form!r}."
        )
    if grouped_conv_form not in GROUPED_CONV_FORMS:
        raise ValueError(
            f"`grouped_conv_form` must be one of {GROUPED_CONV_FORMS}. Received: "
            f"grouped_conv_form={grouped_conv_form!r}."
        )
    if runtime not in (None, *RUNTIMES):
        raise ValueError(
            f"`runtime` must be None or one of {RUNTIMES}. Received: "
            f"runtime={runtime!r}."
        )
    if isinstance(model, keras.Sequential):
        # clone_model replaces calls (BatchNorm by Identity) in graphs only.
        (inputs,), (outputs,) = model.inputs, model.outputs
        model = keras.Model(inputs, outputs, name=model.name)
    pairs = _batch_norm_pairs(model) if fold else {}
    folded_norms = {bn.name: producer for producer, bn in pairs.items()}
    forms = {name: "conv" for name in pairs}
    blocks, grouped_convs = {}, {}  # their report entries, by layer name
    merges = {}  # name -> groups that run as one in the artifact (> 1)
    with paths.portable_paths():
        for layer in keras_internals.all_layers(model):
            if isinstance(layer, IGCConv2D):
                form, why = _block_form(
                    layer, layer.name in pairs, runtime, block_form, dense_blocks
                )
                groups = None
                if form in GROUPED_PRIMARY_FORMS:
                    groups, why = _artifact_groups(
                        layer.name, layer.primary, runtime, why, merges,
                        merge=block_form == "auto",
                    )  # fmt: skip
                forms[layer.name] = form
                blocks[layer.name] = dict(
                    layer=layer.name, form=form, why=why, primary_groups=groups
                )
        for layer in model.layers:  # the layers `clone_layer` sees
            if _is_grouped_conv(layer):
                form, why = _grouped_conv_form(layer, runtime, grouped_conv_form)
                groups = None
                if form == "grouped":
                    groups, why = _artifact_groups(
                        layer.name, layer, runtime, why, merges,
                        merge=grouped_conv_form == "auto",
                    )  # fmt: skip
                grouped_convs[layer.name] = dict(
                    layer=layer.name, form=form, why=why, groups=groups
                )

        def clone_layer(layer):
            if layer.name in folded_norms:
                return keras.layers.Identity(name=layer.name)
            config = layer.get_config()
            if _is_mixed(layer):
                config["dtype"] = "float32"
            if layer.name in pairs:  # the BatchNorm's shift becomes a bias
                config["use_bias"] = True
            cls = type(layer)
            if isinstance(layer, IGCConv2D):
                form = forms[layer.name]
                if form == "dense":
                    return keras.layers.Conv2D.from_config(_dense_config(layer))
                grouped = form in GROUPED_PRIMARY_FORMS
                config["implementation"] = "grouped" if grouped else "auto"
                block = IGCConv2D.from_config(config)
                block._portable_secondary = "grouped" if form == "grouped" else "dense"
                return block
            elif layer.name in grouped_convs:
                cls = GroupConv2D
                config["implementation"] = grouped_convs[layer.name]["form"]
                config["groups"] //= merges.get(layer.name, 1)
            return cls.from_config(config)

        def call_layer(layer, *args, **kwargs):
            if layer.name in folded_norms:
                # BatchNorm's call takes `training` and `mask`; Identity does not.
                return layer(args[0])
            return layer(*args, **kwargs)

        clone = keras.models.clone_model(
            model, clone_function=clone_layer, call_function=call_layer
        )
    for layer in clone.layers:
        if not layer.weights:  # inputs, activations, folded BatchNorms
            continue
        original = model.get_layer(layer.name)
        if layer.name in pairs:
            weights = _folded_weights(original, pairs[layer.name], layer)
        else:
            weights = original.get_weights()
        if layer.name in merges:
            merged = _merged_kernel(original, weights, merges[layer.name])
            if isinstance(layer, IGCConv2D):
                layer._portable_primary_kernel = merged
            else:
                weights[0] = merged
        layer.set_weights(weights)
    msgc_layers = [
        {"layer": layer.name, **_msgc_form(layer, runtime)}
        for layer in keras_internals.all_layers(clone)
        if isinstance(layer, MSGCConv2D)
    ]
    # Keras' exporters want a model that has run once.
    clone(np.zeros((1, *model.input_shape[1:]), "float32"))
    report = FoldingReport(
        folded=[
            {"batch_norm": bn.name, "into": name, "form": forms[name]}
            for name, bn in pairs.items()
        ],
        paths=_execution_paths(clone),
        before=model_complexity(model),
        after=model_complexity(clone),
        blocks=list(blocks.values()),
        runtime=runtime,
        msgc_layers=msgc_layers,
        grouped_convs=list(grouped_convs.values()),
    )
    return clone, report


def _msgc_form(layer, runtime):
    """Set the inference form of an MSGC layer of a clone (built for
    converters: masked) for `runtime`; `{"form", "why"}`."""
    pointwise_heads = layer.conv.kernel_size == (1, 1) and layer.heads > 1
    if runtime == "savedmodel":
        # TensorFlow serves the SavedModel: the forms Keras takes here.
        form, limit = paths.select_msgc_form(
            layer.implementation, layer.heads, layer.input_channels,
            layer.conv.kernel_size,
        )  # fmt: skip
        why = "TensorFlow runs the layer's own inference form"
    elif pointwise_heads and layer.implementation == "auto":
        form, limit = "scaled_kernel", 0
        why = (
            f"{runtime or 'a converter'}: each sample's masks in its own 1x1 "
            f"kernel, one batched matrix product (benchmarks/msgc_latency.py "
            f"--exports: MSGC-MobileNetV2 0.75x (ONNX) and 0.42x (LiteRT) of "
            f"the masked form's time at batch 1)"
        )
    else:
        form, limit = "masked", 0
        why = (
            f"{runtime or 'a converter'}: the gathered form's shapes follow the "
            f"gates and a spatial per-sample kernel needs a batch of one, which "
            f"the converters cannot express; the masked form"
        )
    layer.set_inference_form(form, limit)
    return {"form": form, "why": why}


def check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a keras.Model to export. Received: {type(model).__name__}."
        )
    if not isinstance(model, keras.Sequential) and not keras_internals.is_graph_model(
        model
    ):
        raise ValueError(
            f"Export clones the model layer by layer, which needs a Functional "
            f"or Sequential model; {model.name!r} is a subclassed "
            f"{type(model).__name__}. Export it with model.export() instead "
            f"(no folding), or rebuild it with the functional API."
        )
    if not model.built or not model.inputs:
        raise ValueError(
            f"Model {model.name!r} is not built, so its input shape is unknown. "
            f"Start it with keras.Input(shape) (or call it on a batch) before "
            f"exporting."
        )


def _batch_norm_pairs(model):
    """`{producer name: BatchNormalization}` for every foldable pair."""
    nodes = keras_internals.graph_nodes(model)
    calls = collections.Counter(id(node.operation) for node in nodes)
    consumers = collections.Counter(
        id(parent.operation) for node in nodes for parent in node.parent_nodes
    )
    outputs = {id(t) for t in model.outputs}
    pairs = {}
    for node in nodes:
        bn = node.operation
        if (
            not isinstance(bn, keras.layers.BatchNormalization)
            or bn.axis not in (-1, 3)
            or calls[id(bn)] != 1
            or len(node.parent_nodes) != 1
        ):
            continue
        (parent,) = node.parent_nodes
        producer = parent.operation
        foldable = isinstance(producer, IGCConv2D) or (
            isinstance(producer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
            and producer.activation is keras.activations.linear
        )
        if (
            foldable
            and calls[id(producer)] == 1
            and consumers[id(producer)] == 1
            and not any(id(t) in outputs for t in parent.output_tensors)
        ):
            pairs[producer.name] = bn
    return pairs


def _block_form(layer, folded, runtime, block_form, dense_blocks):
    """`(form, why)` of an IGC block in an export for `runtime`."""
    if dense_blocks == "always" and folded:
        return "dense", "dense_blocks='always'"
    if block_form != "auto":
        if block_form == "dense" and not folded:
            return "igc", "block_form='dense', but no BatchNorm folds into it"
        return block_form, f"block_form={block_form!r}"
    form, why = export_form(
        runtime,
        layer.primary_partitions,
        layer.secondary_partitions,
        layer.kernel_size,
        layer.strides,
        group_inputs=layer.primary.kernel.shape[2],
    )
    if form == "dense" and not folded:
        return "igc", f"{why}; kept an IGC block: no BatchNorm folds into it"
    if form == "dense" and dense_blocks == "never":
        return "igc", f"{why}; kept an IGC block: dense_blocks='never'"
    return form, why


def export_form(runtime, L, M, kernel_size, strides, group_inputs=None):
    """`(form, why)`: the fastest form of an IGC block in `runtime`'s CPU
    kernels, by `benchmarks/export_forms.py` (results/export-forms-cpu.json).

    `group_inputs`: input channels per primary partition (default M, a
    block as wide as its input).
    """
    group_inputs = M if group_inputs is None else group_inputs
    if runtime is None:
        with paths.portable_paths():
            path = paths.select_path(L, group_inputs, M, kernel_size, strides)
        form = "dense" if path == "dense" else "igc"
        return form, "the Keras CPU rule (paths.select_path) without grouped kernels"
    kh, kw = kernel_size
    dense_weights = kh * kw * L * group_inputs * L * M
    return _MEASURED_RULES[runtime](L, M, dense_weights)


def _is_grouped_conv(layer):
    return (
        isinstance(layer, keras.layers.Conv2D)
        and layer.groups > 1
        and layer.data_format == "channels_last"
    )


def _grouped_conv_form(layer, runtime, grouped_conv_form):
    """`(path, why)` of a grouped convolution in an export for `runtime`."""
    if grouped_conv_form != "auto":
        return grouped_conv_form, f"grouped_conv_form={grouped_conv_form!r}"
    return grouped_conv_form_for(
        runtime,
        layer.groups,
        layer.kernel.shape[2],
        layer.filters // layer.groups,
        layer.kernel_size,
        layer.strides,
    )


def grouped_conv_form_for(
    runtime, groups, group_inputs, group_outputs, kernel_size, strides
):
    """`(path, why)`: the fastest path of a grouped convolution in
    `runtime`'s CPU kernels, by `benchmarks/export_forms.py`
    (results/export-grouped-cpu.json)."""
    if runtime is None:
        with paths.portable_paths():
            path = paths.select_path(
                groups, group_inputs, group_outputs, kernel_size, strides
            )
        return path, "the Keras CPU rule (paths.select_path) without grouped kernels"
    if runtime == "savedmodel":
        return "grouped", (
            "savedmodel: TensorFlow's grouped Conv2D (oneDNN on x86 CPUs, cuDNN "
            "on GPUs), the Keras model's own path (paths.select_path)"
        )
    kh, kw = kernel_size
    dense_weights = kh * kw * groups * group_inputs * groups * group_outputs
    if groups <= 4 and dense_weights <= paths.SMALL_DENSE_KERNEL:
        return "dense", (
            f"{runtime}: {groups} groups with a small dense kernel "
            f"({dense_weights} weights) run fastest as one dense convolution"
        )
    return "grouped", (
        f"{runtime}: the runtime's grouped convolution ({groups} groups), "
        f"{groups}x fewer MACs than the dense kernel"
    )


# XNNPACK (LiteRT) runs a grouped convolution of groups with one or two
# outputs each 1.2-2.2x slower than the same convolution with a few
# consecutive groups merged into one of up to 12 outputs (zeros between them),
# although that does several times the MACs; TensorFlow's oneDNN kernel
# (the SavedModel; measured on CPU only) 1.1-1.4x slower than with up to 8;
# ONNX Runtime does not gain (benchmarks/export_forms.py, its grouped cases).
MERGED_GROUP_OUTPUTS = {"litert": 12, "savedmodel": 8}


def merge_factor(runtime, groups, group_inputs, group_outputs):
    """How many consecutive groups of a grouped convolution run as one in
    `runtime` (`ops.merged_groups_kernel`; 1: none), by
    `benchmarks/export_forms.py` (its grouped-convolution cases)."""
    widest = MERGED_GROUP_OUTPUTS.get(runtime)
    if widest is None or group_outputs > 2 or group_inputs * group_outputs == 1:
        return 1
    return max(r for r in range(1, widest // group_outputs + 1) if groups % r == 0)


def _artifact_groups(name, conv, runtime, why, merges, merge=True):
    """`(groups, why)`: the groups the grouped `conv` (a `Conv2D`: the layer,
    or an IGC block's primary) runs as in an export for `runtime`, with
    `merge_factor`'s merge where `merge` (recorded in `merges`), and `why`
    with the merge's reason added."""
    groups, group_outputs = conv.groups, conv.filters // conv.groups
    factor = 1
    if merge:
        factor = merge_factor(runtime, groups, conv.kernel.shape[2], group_outputs)
    if factor == 1:
        return groups, why
    merges[name] = factor
    return groups // factor, (
        f"{why}; as {groups // factor} groups of {factor} ({factor * group_outputs} "
        f"outputs each, zeros between): {runtime} runs groups of {group_outputs} "
        f"outputs slowly"
    )


def _merged_kernel(layer, weights, factor):
    """The grouped kernel of `layer` (an IGC block: its primary's), from its
    artifact `weights`, as that of `factor` times fewer groups."""
    groups = layer.primary_partitions if isinstance(layer, IGCConv2D) else layer.groups
    merged = igc_ops.merged_groups_kernel(weights[0], groups, factor)
    return np.asarray(keras.ops.convert_to_numpy(merged), "float32")


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
        bias = np.zeros(channels) if bias is None else np.asarray(bias, "float64")
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


# Where a grouped secondary pays for its two permutations: it saves
# L*L*M*(M-1) MACs per pixel over the dense 1x1 and the permutations move
# about 2*L*M values, so it wins once L*(M-1) is large enough
# (benchmarks/export_forms.py). ONNX Runtime, each permutation one NCHW
# transpose (`onnx.native_shuffles`): from IGC-L4M8's M=16 stage (60) on,
# not at IGC-L24M2's M=2 stage (24). LiteRT: from IGC-L100M2+Ident.'s
# stage 2 (L=200, M=2: 200) on, 1.3-2.5x faster there at batch 1 and 4 and
# 6% slower at 16, not at its stage 1 (100) or IGC-L24M2's M=8 stage (168).
GROUPED_SECONDARY_FROM = {"litert": 200, "onnx": 48}


def _converted_rule(runtime):
    """ONNX Runtime's and LiteRT's (XNNPACK) fastest form on CPU, by
    benchmarks/export_forms.py (results/export-forms-cpu.json)."""

    def rule(L, M, dense_weights):
        if L <= 4 and dense_weights <= paths.SMALL_DENSE_KERNEL:
            return "dense", (
                f"{runtime}: {L} groups with a small dense kernel "
                f"({dense_weights} weights) run fastest as one dense convolution"
            )
        threshold = GROUPED_SECONDARY_FROM[runtime]
        if L * (M - 1) >= threshold:
            return "grouped", (
                f"{runtime}: L*(M-1) = {L * (M - 1)} >= {threshold}: the grouped "
                f"secondary saves more than its permutations cost"
            )
        return "grouped_primary", (
            f"{runtime}: L*(M-1) = {L * (M - 1)} < {threshold}: a grouped "
            f"primary, then one dense 1x1 (no permutations)"
        )

    return rule


def _savedmodel_rule(L, M, dense_weights):
    return "grouped_primary", (
        "savedmodel: TensorFlow's grouped Conv2D (oneDNN on x86 CPUs, cuDNN on "
        "GPUs) and one 1x1, the Keras model's own path (paths.select_path)"
    )


_MEASURED_RULES = {
    "savedmodel": _savedmodel_rule,
    "litert": _converted_rule("litert"),
    "onnx": _converted_rule("onnx"),
}

"""`convert`: a dense Functional model of yours to an MSGC network, its
chosen convolutions `MSGCConv2D` layers with the dense kernels; and
`copy_weights_by_name` between networks."""

import keras

from keras_igc import keras_internals
from keras_igc.complexity import model_complexity
from keras_igc.layers import MACRegularizer, MSGCConv2D
from keras_igc.msgc.model import MSGCModel
from keras_igc.plotting import plot_topology  # noqa: F401 (msgc.plot_topology)


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

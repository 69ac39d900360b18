"""`quantize_aware`: a float model rebuilt to train under the int8 rounding
its exports apply, and the switches of such a model.

Where the int8 files round, the rebuilt model rounds: the input, each
convolution's output after its folded BatchNorm and fused ReLU
(`QuantizeAwareConvolution`), and the output of every layer that makes new
values (an addition, a pooled mean, a ReLU of its own). Layers that only move
values (padding, max pooling, the channel permutations and shuffles,
reshapes) keep the rounding of their input exactly, as the runtimes do.
"""

import collections

import keras
import numpy as np

from keras_igc import keras_internals, validation
from keras_igc.export import folding
from keras_igc.layers import (
    ChannelShuffle,
    GroupConv2D,
    IGCConv2D,
    IGCV2Conv2D,
    MACRegularizer,
    MSGCConv2D,
)
from keras_igc.msgc.model import MSGCModel
from keras_igc.quantization.activation_quantizer import ActivationQuantizer
from keras_igc.quantization.quantize_aware_convolution import (
    ACTIVATIONS,
    LINEAR_LAYERS,
    QuantizeAwareConvolution,
    activation_name,
)
from keras_igc.quantization.quantize_aware_msgc_conv2d import QuantizeAwareMSGCConv2D
from keras_igc.traced_model import TracedModel

# The layers that `quantize_aware` makes, which train the float weights.
QUANTIZE_AWARE_LAYERS = (QuantizeAwareConvolution, QuantizeAwareMSGCConv2D)

# keras_igc's layers that become several quantization-aware steps: an MSGC
# convolution with its mask generators, an IGCV2 block's chain.
GATED_OR_CHAINED = (MSGCConv2D, IGCV2Conv2D)
# Layers that move values without making new ones: their int8 output keeps
# their input's scale, so they need no rounding of their own.
MOVING_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping2D,
    keras.layers.MaxPooling2D,
    keras.layers.Reshape,
    keras.layers.Flatten,
    keras.layers.Permute,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.Identity,
    ChannelShuffle,
    MACRegularizer,  # its output is its first input; it adds the MAC loss
)
# Layers that make new values: their output is rounded to its own range.
VALUE_LAYERS = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Concatenate,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.ReLU,
    keras.layers.Activation,
    keras.layers.BatchNormalization,
    keras.layers.Rescaling,
)
# The activations the runtimes fuse into the op before them.
FUSED_ACTIVATIONS = ("relu", "relu6")


def quantize_aware(model, *, momentum=0.99):
    """A copy of `model` that trains under int8 rounding, as its int8 exports
    will run it.

    Every convolution (`IGCConv2D`, `Conv2D`, `GroupConv2D`,
    `DepthwiseConv2D`) and `Dense` becomes a `QuantizeAwareConvolution` that
    folds the BatchNorm after it and the ReLU after that, and rounds its
    kernels per output channel and its output per tensor; an `IGCV2Conv2D`
    becomes its chain of such convolutions, an `MSGCConv2D` a
    `QuantizeAwareMSGCConv2D` (its mask generators and gates rounded too);
    the input and the output of every layer that makes new values get an
    `ActivationQuantizer`. An MSGC network stays an `MSGCModel`, with its
    MAC loss. The copy starts from `model`'s weights, computes what `model` computes
    until its first training batch sets the ranges, and is a plain
    Functional model of keras_igc layers: it trains with `fit`, saves, and
    loads with `safe_mode=True`. It is not compiled: compile it with a
    learning rate a few times smaller than the float run's last one.

    Args:
        model: a built Functional or Sequential float model.
        momentum: the moving-average momentum of the ranges.

    Returns:
        The quantization-aware model (`model` is left unchanged).

    Example:

    >>> import keras, keras_igc
    >>> from keras_igc.quantization import quantize_aware
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 8), name="image"),
    ...     keras_igc.IGCConv2D(4, 2, padding="same", use_bias=False, name="block"),
    ...     keras.layers.BatchNormalization(name="block_bn"),
    ...     keras.layers.ReLU(name="block_relu"),
    ...     keras.layers.GlobalAveragePooling2D(name="pool"),
    ...     keras.layers.Dense(3, activation="softmax", name="logits"),
    ... ])
    >>> qat = quantize_aware(model)
    >>> for layer in qat.layers[1:]:
    ...     print(type(layer).__name__, layer.name)
    ActivationQuantizer image_quantizer
    QuantizeAwareConvolution block
    GlobalAveragePooling2D pool
    ActivationQuantizer pool_quantizer
    QuantizeAwareConvolution logits
    """
    model = check_quantizable(model)
    return _Rebuild(model, momentum).model()


def check_quantizable(model):
    """`model` as a Functional graph that `quantize_aware` can rebuild, or a
    ValueError naming what it cannot (a subclassed model, a layer QAT does
    not cover, a model already quantization-aware)."""
    _check_model(model)
    if isinstance(model, keras.Sequential):
        (inputs,), (outputs,) = model.inputs, model.outputs
        model = keras.Model(inputs, outputs, name=model.name)
    _check_layers(model)
    return model


def is_quantize_aware(model):
    """Whether `model` (or a model nested in it) was made by `quantize_aware`."""
    return any(
        isinstance(layer, QUANTIZE_AWARE_LAYERS)
        for layer in keras_internals.all_layers(model)
    )


def freeze_batch_norm_statistics(model, frozen=True):
    """From the next training step on, train `model`'s folded BatchNorms
    with their moving statistics, left as they are (`frozen=False` undoes
    it); returns how many layers it set."""
    count = 0
    for layer in keras_internals.all_layers(model):
        if isinstance(layer, QUANTIZE_AWARE_LAYERS) and (
            hasattr(layer, "batch_norm_frozen")
        ):
            layer.batch_norm_frozen.assign(1.0 if frozen else 0.0)
            count += 1
    return count


class _Rebuild:
    """The graph of `model` replayed node by node with the QAT layers."""

    def __init__(self, model, momentum):
        self.source = model
        self.momentum = momentum
        self.pairs = folding.batch_norm_pairs(model)
        self.nodes = keras_internals.graph_nodes_in_order(model)
        self.calls = collections.Counter(id(node.operation) for node in self.nodes)
        self.consumers = collections.defaultdict(list)
        for node in self.nodes:
            for tensor in node.input_tensors:
                self.consumers[id(tensor)].append(node)
        self.outputs = {id(t) for t in model.outputs}
        self.tensors = {}  # id of a source tensor -> its tensor in the copy
        # id of a source tensor -> the (min, max) tensor of its rounding in
        # the copy, for the convolutions that read it (their int8 bias
        # lies on a grid of its step)
        self.ranges = {}
        self.inputs = {}  # id of a source input -> the copy's input
        self.absorbed = set()  # ids of the BatchNorm and ReLU layers folded in

    def model(self):
        for node in self.nodes:
            layer = node.operation
            if id(layer) in self.absorbed:
                continue
            if node.is_input:
                self._input(node)
            elif isinstance(layer, LINEAR_LAYERS):
                self._linear(node)
            elif isinstance(layer, MSGCConv2D):
                self._msgc(node)
            elif isinstance(layer, IGCV2Conv2D):
                self._igcv2(node)
            else:
                self._replay(node)
        inputs = [self.inputs[id(t)] for t in self.source.inputs]
        outputs = [self.tensors[id(t)] for t in self.source.outputs]
        unwrap = len(inputs) == 1 and not isinstance(self.source.input, list | dict)
        # An MSGC network stays an MSGCModel (fit reports its MACs), a
        # keras_igc network a TracedModel.
        return _model_class(self.source, MSGCModel)(
            inputs[0] if unwrap else inputs,
            outputs[0] if len(outputs) == 1 else outputs,
            name=self.source.name,
        )

    def _input(self, node):
        (tensor,) = node.output_tensors
        name = node.operation.name
        copy = keras.Input(batch_shape=tensor.shape, dtype="float32", name=name)
        self.inputs[id(tensor)] = copy
        self._set(tensor, self._quantizer(f"{name}_quantizer")(copy))

    def _linear(self, node):
        """A convolution or Dense, with the BatchNorm and ReLU after it."""
        layer = node.operation
        (tensor,) = node.output_tensors
        activation = activation_name(layer)
        bn = self.pairs.get(layer.name) if activation == "linear" else None
        batch_norm, activation, ends = self._absorb(layer, tensor, bn, activation)
        linear = {} if isinstance(layer, IGCConv2D) else {"activation": None}
        inner = _copy(layer, **linear)
        wrapper = QuantizeAwareConvolution(
            inner, batch_norm, activation, self.momentum, emit_range=True,
            name=layer.name, dtype="float32",
        )  # fmt: skip
        (source,) = node.input_tensors
        result = wrapper(
            self.tensors[id(source)], input_range=self.ranges.get(id(source))
        )
        for end in ends:
            self._set(end, result)

    def _msgc(self, node):
        """An MSGC convolution, with the BatchNorm and ReLU after its
        output; its gates go on as they are."""
        layer = node.operation
        outputs, gates = node.output_tensors
        bn = self._batch_norm_after(outputs)
        batch_norm, activation, ends = self._absorb(layer, outputs, bn, "linear")
        config = {**layer.get_config(), "dtype": "float32"}
        wrapper = QuantizeAwareMSGCConv2D(
            **config, batch_norm=batch_norm, activation=activation,
            momentum=self.momentum, emit_range=True,
        )  # fmt: skip
        inputs = [self.tensors[id(t)] for t in node.input_tensors]
        result, result_gates, rounding = wrapper(
            inputs if len(inputs) > 1 else inputs[0]
        )
        wrapper.load_weights_of(layer)
        for end in ends:
            self._set(end, [result, rounding])
        self._set(gates, result_gates)

    def _igcv2(self, node):
        """An IGCV2 block as its chain: the depthwise convolution and each
        pointwise one rounded, the shuffles exact; the BatchNorm and ReLU
        after the block go to the last pointwise convolution, before the
        last shuffle (they act per channel, so they commute with it)."""
        layer = node.operation
        (tensor,) = node.output_tensors
        bn = self._batch_norm_after(tensor)
        batch_norm, activation, ends = self._absorb(layer, tensor, bn, "linear")
        (source,) = node.input_tensors
        x, rounding = self.tensors[id(source)], self.ranges.get(id(source))
        steps = [(layer.depthwise, None)]
        steps += list(zip(layer.pointwise, layer.permutations, strict=True))
        for i, (conv, permutation) in enumerate(steps):
            last = i == len(steps) - 1
            if last and batch_norm is not None:
                batch_norm = _permuted(batch_norm, permutation)
            wrapper = QuantizeAwareConvolution(
                _copy(conv, input_shape=x.shape), batch_norm if last else None,
                activation if last else "linear", self.momentum, emit_range=True,
                name=f"{layer.name}_{conv.name}", dtype="float32",
            )  # fmt: skip
            x, rounding = wrapper(x, input_range=rounding)
            if permutation is not None:  # moves values: the same rounding
                x = _copy(permutation, name=f"{layer.name}_{permutation.name}")(x)
        for end in ends:
            self._set(end, [x, rounding])

    def _absorb(self, layer, tensor, bn, activation):
        """`(BatchNorm copy or None, activation, ends)`: the BatchNorm `bn`
        (None: none) and the ReLU that read `layer`'s output `tensor`, taken
        into the quantization-aware layer; `ends` are the source tensors
        its output stands for."""
        batch_norm, ends = None, [tensor]
        if bn is not None:
            batch_norm = _copy(bn)
            self.absorbed.add(id(bn))
            ends.append(self._single_consumer(tensor).output_tensors[0])
        relu = self._fusable_relu(ends[-1]) if activation == "linear" else None
        if relu is not None:
            activation = _relu_kind(relu)
            self.absorbed.add(id(relu))
            ends.append(self._single_consumer(ends[-1]).output_tensors[0])
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"Layer {layer.name!r} has activation={activation!r}, which int8 "
                f"kernels do not fuse; QAT takes linear, relu, relu6 or a final "
                f"softmax. Use one of those, or a separate Activation layer."
            )
        return batch_norm, activation, ends

    def _batch_norm_after(self, tensor):
        """The BatchNormalization over the channels that alone reads
        `tensor` (not a model output), or None."""
        bn = self._sole_reader(tensor)
        foldable = isinstance(bn, keras.layers.BatchNormalization)
        foldable = foldable and bn.axis in (-1, 3) and self.calls[id(bn)] == 1
        return bn if foldable else None

    def _replay(self, node):
        """A layer as it is; rounded after it if it makes new values (after
        the ReLU that follows it instead, which the runtimes fuse)."""
        layer = node.operation
        args, kwargs = node.arguments.fill_in(self.tensors)
        result = _copy(layer)(*args, **kwargs)  # with its weights
        (tensor,) = node.output_tensors
        rounded = isinstance(layer, VALUE_LAYERS) and not _is_softmax(layer)
        if rounded and self._fusable_relu(tensor) is None:
            result = self._quantizer(f"{layer.name}_quantizer")(result)
        elif isinstance(layer, MOVING_LAYERS):  # its input's rounding
            result = [result, self.ranges.get(id(node.input_tensors[0]))]
        self._set(tensor, result)

    def _set(self, tensor, result):
        """`result` (a tensor, or `[tensor, range or None]`) stands for the
        source `tensor` in the copy."""
        if isinstance(result, list | tuple):
            result, rounding = result
            if rounding is not None:
                self.ranges[id(tensor)] = rounding
        self.tensors[id(tensor)] = result

    def _quantizer(self, name):
        # float32 under a mixed-precision policy too: the rounding of the
        # int8 files, not of float16. It gives its range to the
        # convolutions that read it.
        return ActivationQuantizer(
            self.momentum, emit_range=True, name=name, dtype="float32"
        )

    def _single_consumer(self, tensor):
        (node,) = self.consumers[id(tensor)]
        return node

    def _fusable_relu(self, tensor):
        """The ReLU layer that alone reads `tensor`, if a runtime fuses it
        into the op before: a plain ReLU or ReLU6."""
        layer = self._sole_reader(tensor)
        return layer if layer is not None and _relu_kind(layer) else None

    def _sole_reader(self, tensor):
        """The layer that alone reads `tensor`, None where several do or
        `tensor` is a model output (its value must stay as it is)."""
        readers = self.consumers[id(tensor)]
        if len(readers) != 1 or id(tensor) in self.outputs:
            return None
        return readers[0].operation


def _permuted(batch_norm, permutation):
    """`batch_norm` (a copy) changed to act before the `ChannelShuffle`
    `permutation` as it acted after it: channel `perm[c]` before the
    shuffle is channel `c` after it, so it takes channel `c`'s parameters."""
    channels = batch_norm.moving_mean.shape[0]
    order = keras.ops.convert_to_numpy(
        permutation(np.arange(channels, dtype="float32").reshape(1, 1, 1, -1))
    ).reshape(-1)
    inverse = np.argsort(order.astype("int64"))
    batch_norm.set_weights([w[inverse] for w in batch_norm.get_weights()])
    return batch_norm


def _relu_kind(layer):
    """`"relu"` or `"relu6"` for a layer a runtime fuses as one, else None."""
    if isinstance(layer, keras.layers.ReLU):
        plain = layer.negative_slope == 0 and layer.threshold == 0
        if plain and layer.max_value is None:
            return "relu"
        if plain and layer.max_value == 6:
            return "relu6"
        return None
    if isinstance(layer, keras.layers.Activation):
        name = activation_name(layer)
        return name if name in FUSED_ACTIVATIONS else None
    return None


def _is_softmax(layer):
    return isinstance(layer, keras.layers.Activation) and (
        activation_name(layer) == "softmax"
    )


def _copy(layer, input_shape=None, **changes):
    """A float32 copy of `layer` with its weights (a grouped `Conv2D` as a
    `GroupConv2D`, which avoids Keras' XLA path on TensorFlow), built for
    `input_shape` (default: its call's in the graph)."""
    config = {**layer.get_config(), **changes, "dtype": "float32"}
    cls = type(layer)
    if folding.is_grouped_conv(layer):
        cls = GroupConv2D
    copy = cls.from_config(config)
    if layer.weights:
        copy.build(input_shape or _input_shape(layer))
        copy.set_weights(layer.get_weights())
    return copy


def _input_shape(layer):
    """The input shape of `layer`'s call in its graph; None for a layer
    nested in another (a wrapper's quantizer: its range is scalar)."""
    if keras_internals.was_called(layer):
        return keras_internals.call_inputs(layer)[0].shape
    return None


def _check_model(model):
    validation.graph_model(model, "quantize_aware")
    if is_quantize_aware(model):
        raise ValueError(
            f"Model {model.name!r} is already quantization-aware; train it as it "
            f"is (quantize_aware takes the float model)."
        )


def _check_layers(model):
    """Every layer of the graph is one QAT covers, or a ValueError naming
    the first that is not and what to do."""
    known = (*LINEAR_LAYERS, *MOVING_LAYERS, *VALUE_LAYERS, *GATED_OR_CHAINED)
    for node in keras_internals.graph_nodes_in_order(model):
        layer = node.operation
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"Model {model.name!r} holds the model {layer.name!r} as a layer; "
                f"quantize_aware needs one flat graph. Rebuild it flat, e.g. "
                f"call the inner model's layers on the outer inputs."
            )
        if not isinstance(layer, known):
            raise ValueError(
                f"quantize_aware does not cover layer {layer.name!r} "
                f"({type(layer).__name__}): it knows the convolutions (IGCConv2D, "
                f"IGCV2Conv2D, MSGCConv2D, Conv2D, GroupConv2D, DepthwiseConv2D), "
                f"Dense, BatchNorm, MACRegularizer, "
                f"ReLU/ReLU6, Add, pooling, padding and ChannelShuffle. Export "
                f"this model with post-training int8 (--quantize int8) instead."
            )
        # Merges take several inputs, the MAC ledger the gates too, an MSGC
        # layer a separate mask source and gives its gates.
        several_inputs = (*VALUE_LAYERS, MACRegularizer, MSGCConv2D)
        one_in = len(node.input_tensors) == 1 or isinstance(layer, several_inputs)
        one_out = len(node.output_tensors) == 1 or isinstance(layer, MSGCConv2D)
        if not node.is_input and not (one_in and one_out):
            raise ValueError(
                f"Layer {layer.name!r} takes {len(node.input_tensors)} inputs and "
                f"gives {len(node.output_tensors)} outputs; quantize_aware takes "
                f"one of each (several inputs for merges such as Add)."
            )


def inference_model(model, round_activations=True):
    """A trained quantization-aware `model` as the plain layers the exporters
    convert: each `QuantizeAwareConvolution` becomes its float convolution
    (an IGC block: its primary `GroupConv2D`, then one 1x1 `Conv2D` that
    holds the permutation, secondary and inverse) with the folded, rounded
    kernels and bias the int8 files hold, then its activation layer. With
    `round_activations`, every `ActivationQuantizer` stays (TensorFlow runs
    it as `FakeQuantWithMinMaxVars`, whose ranges the converters read);
    without, the model is float from end to end: the float files of a QAT
    run."""
    if not is_quantize_aware(model):
        raise ValueError(
            f"Model {model.name!r} is not quantization-aware (made by "
            f"quantize_aware); export it as it is."
        )
    tensors, inputs = {}, {}
    for node in keras_internals.graph_nodes_in_order(model):
        layer = node.operation
        if node.is_input:
            (tensor,) = node.output_tensors
            inputs[id(tensor)] = keras.Input(
                batch_shape=tensor.shape, dtype="float32", name=layer.name
            )
            tensors[id(tensor)] = inputs[id(tensor)]
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        kwargs.pop("training", None)
        if isinstance(layer, QuantizeAwareConvolution):
            rounding = _input_range(node)
            result = _plain_layers(layer, args[0], round_activations, rounding)
        elif isinstance(layer, QuantizeAwareMSGCConv2D):
            # The same layer with fixed ranges (or none): its masked form
            # is what the int8 kernels run.
            frozen = layer.frozen_copy(round_activations)
            result = frozen(*args, **kwargs)
            frozen.load_weights_of(layer)
        elif isinstance(layer, ActivationQuantizer):
            result = _frozen(layer, round_activations, layer.name)(args[0])
        elif isinstance(layer, MACRegularizer):
            # Its output is its first input; the MAC ledger is for training
            # (a converter would keep its float arithmetic).
            result = args[0][0]
        else:
            result = _copy(layer)(*args, **kwargs)
        if getattr(layer, "emit_range", False):  # the range: in the weights
            result = [*(result if isinstance(result, list) else [result]), None]
        results = result if len(node.output_tensors) > 1 else [result]
        for tensor, value in zip(node.output_tensors, results, strict=True):
            tensors[id(tensor)] = value
    # Without the MAC ledger an MSGC network is no longer an MSGCModel.
    return _model_class(model, TracedModel)(
        [inputs[id(t)] for t in model.inputs][0],
        [tensors[id(t)] for t in model.outputs][0],
        name=model.name,
    )


def _model_class(model, widest):
    """The class a rebuilt `model` takes: `model`'s own where it is `widest`
    or a `TracedModel` below it, else a plain `keras.Model`."""
    for cls in (widest, TracedModel):
        if isinstance(model, cls):
            return cls
    return keras.Model


def _frozen(quantizer, round_activations, name):
    """The quantizer's range as a fixed one, or an `Identity` where it has
    none (it never saw a training batch) or activations stay float."""
    rounding = quantizer.range if round_activations else None
    if rounding is None:
        return keras.layers.Identity(name=name)
    return ActivationQuantizer(fixed_range=rounding, name=name)


def _input_range(node):
    """The `(min, max)` a `QuantizeAwareConvolution`'s call in the graph
    reads as its input's rounding (None: none)."""
    tensor = node.arguments.kwargs.get("input_range")
    if tensor is None:
        return None
    producer = keras_internals.producer(tensor)
    if isinstance(producer, QuantizeAwareConvolution):
        producer = producer.output_quantizer
    elif isinstance(producer, QuantizeAwareMSGCConv2D):
        producer = producer.quantizers["output"]
    return producer.range


def _plain_layers(wrapper, x, round_activations, input_range=None):
    """`wrapper`'s computation as plain layers on `x` (its bias on the
    int32 grid of `input_range`)."""
    kernels, bias = wrapper.folded_weights(input_range)
    layer, name = wrapper.layer, wrapper.name
    if isinstance(layer, IGCConv2D):
        L, M = layer.primary_partitions, layer.secondary_partitions
        primary = GroupConv2D(
            L * M, layer.kernel_size, strides=layer.strides, padding=layer.padding,
            dilation_rate=layer.dilation_rate, groups=L, use_bias=False,
            name=f"{name}_primary",
        )  # fmt: skip
        x = primary(x)
        primary.set_weights([kernels[0]])
        middle = wrapper.intermediate_quantizer
        x = _frozen(middle, round_activations, f"{name}_primary_quantizer")(x)
        # The permutations, secondary and inverse as one 1x1 convolution, as
        # the export writes a block whose primary runs grouped.
        secondary = keras.layers.Conv2D(
            L * M, 1, use_bias=bias is not None, name=f"{name}_secondary"
        )
        x = secondary(x)
        secondary.set_weights([kernels[1]] + ([] if bias is None else [bias]))
    else:
        config = {**layer.get_config(), "name": name, "use_bias": bias is not None}
        if not isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.Dense):
            config.pop("implementation", None)
        plain = type(layer).from_config(config)
        x = plain(x)
        plain.set_weights(kernels + ([] if bias is None else [bias]))
    if wrapper.activation in ("relu", "relu6"):
        six = 6.0 if wrapper.activation == "relu6" else None
        x = keras.layers.ReLU(max_value=six, name=f"{name}_{wrapper.activation}")(x)
    x = _frozen(wrapper.output_quantizer, round_activations, f"{name}_quantizer")(x)
    if wrapper.activation == "softmax":
        x = keras.layers.Activation("softmax", name=f"{name}_softmax")(x)
    return x

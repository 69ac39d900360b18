"""ONNX, through Keras' exporter and tf2onnx (the `export` extra).

tf2onnx converts an NHWC graph: around each convolution it transposes to
NCHW and back, and a channel shuffle written on NHWC tensors (reshape to
`(-1, g, C/g)`, transpose, reshape) becomes three transposes. `write` turns
each such shuffle into one transpose of the NCHW tensor (reshape to
`(N, g, C/g, H*W)`, swap, reshape back), as PyTorch's exporter writes it,
and a transpose back to NHWC that cancels against the next convolution's.
A ReLU that follows such a shuffle moves before it, onto the convolution's
output (a permutation commutes with an elementwise op), where ONNX Runtime
fuses it into the convolution.

The 8-bit file is QDQ with per-channel weight scales, calibrated (or int8
weights alone), except the convolutions `INT8_RULE` keeps float.

An adapter module of `keras_igc.export.runtimes`: its names are the ones
every adapter defines (see that module).
"""

import os
import warnings

import numpy as np

from keras_igc import forms
from keras_igc.export.dependencies import require, runtime_threads
from keras_igc.layers.int8_kernel import per_channel_int8
from keras_igc.layers.msgc_conv2d import GATE_DECISION

NAME = "onnx"
FILE = "model.onnx"
SUFFIX = ".onnx"
INT8_FILE = "model_int8.onnx"

# ONNX Runtime's int8 grouped convolution keeps up with its float one from
# groups this wide on (MSGC's 4-head layers, 64 and more inputs a group, ran
# as fast in int8; IGC's groups of 1-2 channels ran 1.3-2.3x slower).
INT8_WIDE_GROUP = 16


def _int8(g):
    """Float for >2 narrow groups (under 16 inputs or outputs) but depthwise."""
    narrow = min(g.group_inputs, g.group_outputs) < INT8_WIDE_GROUP
    if g.groups > 2 and narrow and (g.group_inputs, g.group_outputs) != (1, 1):
        return "float", (
            f"onnx: {g.groups} groups of {g.group_inputs} inputs and "
            f"{g.group_outputs} outputs: ONNX Runtime's QLinearConv is fast for "
            f"depthwise, few or wide groups only; these measured slower in "
            f"int8 than in float"
        )
    return "int8", (
        "onnx: ONNX Runtime's QLinearConv (dense, depthwise, 2 groups, wide groups)"
    )


# Which convolutions of the 8-bit file run in int8 (`forms.Rule` of kind
# "int8"), a rule over the graph's Conv nodes.
INT8_RULE = forms.Rule(
    NAME, "int8", _int8, "benchmarks/results/quantize-classes-cpu.json"
)


def write(model, path, stage=None):
    """Write `model` (the runtime's clone) as an `.onnx` file at `path`; no op
    needs a fallback (a node tf2onnx cannot convert is an error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.export(path, format="onnx", verbose=False)
    onnx = require("onnx", "ONNX export")
    # tf2onnx writes unconvertible TensorFlow functions as nodes that no
    # runtime can load, without failing; refuse such a file here.
    leftovers = sorted(
        {
            node.op_type
            for node in onnx.load(path).graph.node
            if node.op_type.endswith("PartitionedCall")
        }
    )
    if leftovers:
        os.remove(path)
        raise RuntimeError(
            f"tf2onnx could not convert {leftovers} nodes (XLA-compiled "
            f"functions). Report this with the model's summary."
        )
    model = onnx.load(path)
    if native_shuffles(model):
        onnx.checker.check_model(model)
        onnx.save(model, path)
    return []


def write_int8(stage, path, scheme, images, int8_io=False, batch=8):
    """Write the 8-bit file of the float one `write` wrote (of a
    quantization-aware model: `write_rounded_int8`; `int8_io` is LiteRT's
    alone); returns `{node: why}` of the convolutions kept float."""
    if scheme == "int8" and stage.rounded is not None:
        return write_rounded_int8(stage, path)
    return quantize_file(stage.path(NAME), path, scheme, images, batch)


def quantize_file(float_path, path, scheme, images, batch=8, kept_float=None):
    """Write a quantized ONNX file from the float one: QDQ with per-channel
    weight scales (`"int8"`), or int8 weights alone (`"dynamic"`). Each
    convolution whose int8 form ONNX Runtime runs slower stays float
    (`INT8_RULE`), or those of `kept_float` (`{node: why}`) instead; returns
    `{node: why}` of those."""
    onnx = require("onnx", "ONNX export")
    from onnxruntime import quantization as q

    graph = onnx.load(float_path).graph
    if kept_float is None:
        kept_float = rule_kept_float(graph)
    if scheme == "dynamic":
        q.quantize_dynamic(
            float_path, path, weight_type=q.QuantType.QInt8,
            nodes_to_exclude=list(kept_float),
        )  # fmt: skip
        return kept_float
    name = graph.input[0].name

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.batches = iter(
                {name: images[s : s + batch]} for s in range(0, len(images), batch)
            )

        def get_next(self):
            return next(self.batches, None)

    prepared = f"{path}.prepared.onnx"
    try:
        q.quant_pre_process(float_path, prepared)
        q.quantize_static(
            prepared, path, Reader(), quant_format=q.QuantFormat.QDQ,
            per_channel=True, activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8, nodes_to_exclude=list(kept_float),
        )  # fmt: skip
    finally:
        if os.path.exists(prepared):
            os.remove(prepared)
    model = onnx.load(path)
    if _float_outputs(model, kept_float):
        onnx.save(model, path)
    return kept_float


def rule_kept_float(graph):
    """`{node: why}` of the convolutions of an ONNX graph that `INT8_RULE`
    keeps float."""
    return {
        node.name: why
        for node, geometry in convolutions(graph)
        for form, why in [INT8_RULE.decide(geometry)]
        if form == "float"
    }


def _float_outputs(model, kept_float):
    """Drop the quantize-dequantize pair on each kept-float convolution's
    output. Between a dequantized input and a quantized output, ONNX Runtime
    (1.20 on) quantizes a float convolution's weights when it loads the file
    and runs it as the QLinearConv it was kept float to avoid: the
    quick-start network's 24-group primaries took 35 ms each at batch 32,
    and its int8 file 1.8x its float file's time (0.83x without the
    pairs). Its consumers read the float output instead. Rewrites `model`
    (an `onnx.ModelProto`) in place; returns whether it dropped any."""
    graph = model.graph
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    dropped = []
    for node in graph.node:
        if node.name not in kept_float:
            continue
        output = node.output[0]
        for quantize in consumers.get(output, []):
            dequantizers = consumers.get(quantize.output[0], [])
            if quantize.op_type != "QuantizeLinear" or any(
                d.op_type != "DequantizeLinear" for d in dequantizers
            ):
                continue
            for dequantize in dequantizers:
                for reader in consumers.get(dequantize.output[0], []):
                    for i, name in enumerate(reader.input):
                        if name == dequantize.output[0]:
                            reader.input[i] = output
                dropped.append(dequantize)
            dropped.append(quantize)
    if not dropped:
        return False
    for node in dropped:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for initializer in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(initializer)
    return True


def write_rounded_int8(stage, path):
    """Write the 8-bit file of a quantization-aware model from its rounded
    clone (`stage.rounded`): tf2onnx turns each of its fixed ranges into a
    quantize-dequantize pair, and `quantize_rounded_weights` stores its
    rounded kernels as int8 with their scales, except those of the
    convolutions `INT8_RULE` keeps float, which compute in float from their
    rounded weights and leave their output unrounded (a step finer than the
    model trained: the quick-start network's file agreed with it on 99.4-99.7 %
    of held-out digits at 1.1x its float file's time; with those outputs
    rounded too, ONNX Runtime ran them as its slow int8 kernel, 99.7-100 %
    at 2.6-4.7x); returns `{node: why}` of those."""
    write(stage.rounded[NAME], path)
    onnx = require("onnx", "ONNX export")
    model = onnx.load(path)
    kept_float = rule_kept_float(model.graph)
    quantize_rounded_weights(model, kept_float)
    _float_outputs(model, kept_float)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return kept_float


def quantize_rounded_weights(model, kept_float=()):
    """Store each Conv's and MatMul's float weights, which
    `quantization.inference_model` rounded to int8 steps, as int8 with one
    symmetric scale per output channel and a DequantizeLinear (what ONNX
    Runtime's quantizer writes, and fuses into QLinearConv); a Conv's bias
    as int32 in steps of its input's scale times the weight's, where a
    DequantizeLinear gives the input's scale. The nodes named in
    `kept_float` keep their float weights. Rewrites `model` (an
    `onnx.ModelProto`) in place; returns how many weights it stored."""
    from onnx import numpy_helper

    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    producers = _producers(graph)
    count = 0
    for node in list(graph.node):
        if node.op_type not in ("Conv", "MatMul") or node.input[1] not in weights:
            continue
        if node.name in kept_float:
            continue
        kernel = numpy_helper.to_array(weights[node.input[1]])
        if kernel.dtype != np.float32:
            continue
        axis = 0 if node.op_type == "Conv" else 1  # OIHW; (inputs, outputs)
        integers, scale = per_channel_int8(kernel, axis)
        _dequantized(graph, node, 1, integers, scale, axis)
        count += 1
        step = _input_scale(node.input[0], producers, weights)
        if node.op_type == "Conv" and len(node.input) > 2 and step is not None:
            bias = numpy_helper.to_array(weights[node.input[2]])
            bias_scale = (step * scale).astype(np.float32)
            integers = np.round(bias / bias_scale).astype(np.int32)
            _dequantized(graph, node, 2, integers, bias_scale, 0)
    _remove_dead_nodes(graph)
    return count


def _dequantized(graph, node, index, integers, scale, axis):
    """`node`'s input `index` read from `integers` (int8 or int32, zero
    point 0) times `scale` along `axis`, through a DequantizeLinear."""
    from onnx import helper, numpy_helper

    tag = f"{node.input[index]}_{integers.dtype.name}"
    graph.initializer.extend([
        numpy_helper.from_array(integers, tag),
        numpy_helper.from_array(scale.astype(np.float32), f"{tag}_scale"),
        numpy_helper.from_array(np.zeros(len(scale), integers.dtype), f"{tag}_zero"),
    ])  # fmt: skip
    dequantize = helper.make_node(
        "DequantizeLinear", [tag, f"{tag}_scale", f"{tag}_zero"],
        [f"{tag}_dequantized"], axis=axis,
    )  # fmt: skip
    graph.node.insert(list(graph.node).index(node), dequantize)
    node.input[index] = dequantize.output[0]


def _input_scale(name, producers, weights):
    """The scale of the DequantizeLinear that gives tensor `name`, through
    layout ops (a transpose or reshape keeps the scale); None if none does."""
    from onnx import numpy_helper

    node = producers.get(name)
    while node is not None and node.op_type in ("Transpose", "Reshape"):
        node = producers.get(node.input[0])
    if node is None or node.op_type != "DequantizeLinear":
        return None
    scale = weights.get(node.input[1])
    return None if scale is None else float(numpy_helper.to_array(scale))


def convolutions(graph):
    """`(node, forms.Geometry)` of each convolution of an ONNX graph whose
    weights are constants."""
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    found = []
    for node in graph.node:
        if node.op_type != "Conv" or node.input[1] not in shapes:
            continue
        out, group_inputs, *kernel = shapes[node.input[1]]
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        geometry = forms.Geometry(
            groups, group_inputs, out // groups, tuple(kernel) or (1, 1)
        )
        found.append((node, geometry))
    return found


def float_ops(path):
    """The operations of an 8-bit file that compute in float, by type:
    `{op: count}` (what the scheme or `INT8_RULE` leaves float)."""
    onnx = require("onnx", "Reading the ONNX artifact")
    graph = onnx.load(path).graph
    constants = {i.name for i in graph.initializer}
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    found = {}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        inputs = [i for i in node.input if i and i not in constants]
        # Between QDQ pairs ONNX Runtime fuses the op into its integer form.
        if node.op_type.startswith("QLinear") or node.op_type.endswith("Integer"):
            continue
        integer = bool(inputs) and all(i in dequantized for i in inputs)
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            integer = integer and node.input[1] in dequantized  # int8 weights
        if integer:
            continue
        found[node.op_type] = found.get(node.op_type, 0) + 1
    return found


def gate_logits(path):
    """The types of the mask logits the MSGC gates of the file compare with
    their threshold (ONNX Runtime compares dequantized copies of int8
    values: `"int8"` too, as a step of the int8 grid can flip them)."""
    onnx = require("onnx", "Reading the ONNX artifact")
    graph = onnx.load(path).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return {
        "int8" if node.input[0] in dequantized else "float32"
        for node in graph.node
        if node.op_type == "GreaterOrEqual" and GATE_DECISION.search(node.output[0])
    }


def native_shuffles(model):
    """Rewrite `model` (an `onnx.ModelProto`) in place; returns how many
    shuffles were rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producers = _producers(graph)
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    rewritten, shuffles = 0, []
    for second in list(graph.node):
        # The shuffle's core: Transpose(0,2,3,1) -> Reshape(-1, g, C/g)
        # -> Transpose(0,2,1) -> Reshape(the NHWC shape).
        if second.op_type != "Transpose" or _perm(second) != [0, 2, 1]:
            continue
        grouped = producers.get(second.input[0])
        if grouped is None or grouped.op_type != "Reshape":
            continue
        shape = constants.get(grouped.input[1])
        to_nhwc = producers.get(grouped.input[0])
        if (
            shape is None
            or list(shape[:1]) != [-1]
            or len(shape) != 3
            or to_nhwc is None
            or to_nhwc.op_type != "Transpose"
            or _perm(to_nhwc) != [0, 2, 3, 1]
        ):
            continue
        (back,) = _consumers(graph, second.output[0]) or [None]
        if back is None or back.op_type != "Reshape":
            continue
        if (
            len(_consumers(graph, grouped.output[0])) != 1
            or len(_consumers(graph, to_nhwc.output[0])) != 1
        ):
            continue
        groups, width = int(shape[1]), int(shape[2])
        source = to_nhwc.input[0]  # NCHW
        tag = f"native_shuffle_{rewritten}"
        target = np.array([0, groups, width, -1], dtype=np.int64)
        graph.initializer.append(numpy_helper.from_array(target, f"{tag}_shape"))
        new = [
            helper.make_node("Reshape", [source, f"{tag}_shape"], [f"{tag}_4d"]),
            helper.make_node(
                "Transpose", [f"{tag}_4d"], [f"{tag}_t"], perm=[0, 2, 1, 3]
            ),
            helper.make_node("Shape", [source], [f"{tag}_nchw_shape"]),
            helper.make_node(
                "Reshape", [f"{tag}_t", f"{tag}_nchw_shape"], [f"{tag}_nchw"]
            ),
            helper.make_node(
                "Transpose", [f"{tag}_nchw"], [back.output[0]], perm=[0, 2, 3, 1]
            ),
        ]
        # The new nodes read only `source`: they go where the first of the
        # old ones was, before anything that reads the shuffle's output.
        index = list(graph.node).index(to_nhwc)
        for node in (to_nhwc, grouped, second, back):
            graph.node.remove(node)
        for offset, node in enumerate(new):
            graph.node.insert(index + offset, node)
        # (graph.node holds copies: the shuffle's nodes are found again by
        # their outputs)
        shuffles.append((new[0].output[0], new[2].output[0], new[-1].output[0]))
        rewritten += 1
        producers = _producers(graph)
    for shuffle in shuffles:
        _relu_before_shuffle(graph, *shuffle)
    _cancel_transposes(graph)
    _remove_dead_nodes(graph)
    return rewritten


def _relu_before_shuffle(graph, first, shape, last):
    """Conv -> shuffle -> Relu becomes Conv -> Relu -> shuffle, where the
    shuffle (its nodes named by their outputs: the first reshape `first`,
    the `Shape` of its input `shape`, the last transpose `last`) is all that
    reads the Conv."""
    from onnx import helper

    made = _producers(graph)
    first, shape = made[first], made[shape]
    source = first.input[0]
    producer = made.get(source)
    readers = _consumers(graph, source)
    after = _consumers(graph, last)
    outputs = {output.name for output in graph.output}
    if (
        producer is None
        or producer.op_type != "Conv"
        or any(n.output[0] not in (first.output[0], shape.output[0]) for n in readers)
        or len(after) != 1
        or after[0].op_type != "Relu"
        or after[0].output[0] in outputs
    ):
        return
    (relu,) = after
    activated = f"{source}_relu"
    first.input[0] = activated
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == relu.output[0]:
                node.input[i] = last
    graph.node.remove(relu)
    index = list(graph.node).index(first)
    graph.node.insert(index, helper.make_node("Relu", [source], [activated]))


def _producers(graph):
    """`{tensor name: the node that writes it}`."""
    return {out: node for node in graph.node for out in node.output}


def _consumers(graph, name):
    """The nodes that read tensor `name`."""
    return [node for node in graph.node if name in node.input]


def _perm(node):
    return [list(a.ints) for a in node.attribute if a.name == "perm"][0]


def _cancel_transposes(graph):
    """Transpose(0,2,3,1) then Transpose(0,3,1,2): the second's readers read
    the first's input instead."""
    producers = _producers(graph)
    outputs = {output.name for output in graph.output}
    for node in list(graph.node):
        if node.op_type != "Transpose" or _perm(node) != [0, 3, 1, 2]:
            continue
        before = producers.get(node.input[0])
        if before is None or before.op_type != "Transpose":
            continue
        if _perm(before) != [0, 2, 3, 1] or node.output[0] in outputs:
            continue
        for other in graph.node:
            for i, name in enumerate(other.input):
                if name == node.output[0]:
                    other.input[i] = before.input[0]
        graph.node.remove(node)


def _remove_dead_nodes(graph):
    """Drop the nodes nothing reads (the old shuffles' shape arithmetic), then
    the constants only they read (ONNX Runtime warns about each one)."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    for initializer in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(initializer)


def runner(path, probes=()):
    """A function that loads the artifact and returns its `predict`.

    `probes`: names of inner tensors (`tensor_names`) that `predict` also
    returns, as `(output, [probe values])`.
    """

    def make():
        ort = require("onnxruntime", "Running the ONNX artifact")
        model = path
        if probes:
            onnx = require("onnx", "Probing the ONNX artifact")
            graph = onnx.load(path)
            graph.graph.output.extend(onnx.ValueInfoProto(name=n) for n in probes)
            model = graph.SerializeToString()
        options = ort.SessionOptions()
        options.intra_op_num_threads = runtime_threads()
        session = ort.InferenceSession(
            model, options, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        if not probes:
            return lambda x: session.run(None, {name: x})[0]

        def run(x):
            y, *values = session.run(None, {name: x})
            return y, values

        return run

    return make


def io_shapes(path):
    """`(input shape, output shape)` of the file, batch axes first (None
    where free)."""
    onnx = require("onnx", "Reading the ONNX artifact")
    graph = onnx.load(path, load_external_data=False).graph
    return tuple(
        tuple(d.dim_value or None for d in value.type.tensor_type.shape.dim)
        for value in (graph.input[0], graph.output[0])
    )


def tensor_names(path):
    """The names of the file's node outputs (what `runner` can probe)."""
    onnx = require("onnx", "Reading the ONNX artifact")
    return [name for node in onnx.load(path).graph.node for name in node.output]

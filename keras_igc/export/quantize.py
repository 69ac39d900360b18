"""8-bit artifacts: LiteRT full-integer and ONNX QDQ, calibrated; weight-only.

`"int8"` (static): int8 weights with one scale per output channel (grouped
and depthwise convolutions need them: their channels' ranges differ by
orders of magnitude) and int8 activations whose ranges come from calibration
examples run through the folded float model. `"dynamic"`: int8 weights,
float activations. Both start from the folded clone `prepare` made for the
runtime, so BatchNorm is already inside the convolutions' scales.
"""

import os
import re

import numpy as np

from keras_igc import forms

SCHEMES = ("int8", "dynamic")
FILES = {"litert": "model_int8.tflite", "onnx": "model_int8.onnx"}
DEFAULT_CALIBRATION = 256  # examples: a few hundred settle the ranges
# An MSGC layer's gate decisions, the comparison of its mask logits with the
# threshold (`GumbelSigmoidGate.inference_gates`): both converters name its
# output after the layer's scope, `.../<scope>/gate[_N]/GreaterEqual`.
_GATE_DECISION = re.compile(r"([^/;]+)/gate(_\d+)?/GreaterEqual(:0|;|$)")


def check_scheme(quantize, int8_io=False):
    """`quantize` (None or one of `SCHEMES`), else a ValueError naming it."""
    if quantize is not None and quantize not in SCHEMES:
        raise ValueError(
            f"`quantize` must be None or one of {SCHEMES} (--quantize int8 or "
            f"dynamic). Received: quantize={quantize!r}."
        )
    if int8_io and quantize != "int8":
        raise ValueError(
            f"int8 inputs and outputs (--int8-io) need full-integer "
            f"quantization: pass quantize='int8' (--quantize int8). Received: "
            f"quantize={quantize!r}."
        )
    return quantize


def parse_calibration(text):
    """`"digits:300"` -> `("digits", 300)`; `"digits"` -> the default count."""
    from keras_igc import quick

    name, _, count = str(text).partition(":")
    if not count:
        return name, quick.examples(DEFAULT_CALIBRATION)
    try:
        number = int(count)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(
            f"The calibration count after ':' must be a positive number of "
            f"examples, e.g. {name}:300. Received: {text!r}."
        )
    return name, quick.examples(number)


# The most examples a calibration stream may give: a few hundred settle the
# ranges, and a stream without end would never finish.
MAX_CALIBRATION = 10_000


def calibration_images(calibration, input_shape, *, data_dir=None, download=False):
    """Calibration images as one float32 array shaped like the model's input.

    `calibration`: an array of images, a finite `tf.data.Dataset` (or other
    iterable) of images or of `(images, labels)` batches, or
    `"DATASET[:N]"`: the first N examples of the training split of a
    `keras_igc.data` dataset (the held-out split is left for the agreement
    check). Every image is checked before any is used: at least one, at most
    `MAX_CALIBRATION`, numbers, all finite, shaped like the model's input.
    """
    if calibration is None:
        raise ValueError(
            "quantize='int8' needs calibration examples to set the activation "
            "ranges: pass calibration= an array or dataset of images, or "
            "--calibration DATASET[:N] (e.g. digits:300)."
        )
    if isinstance(calibration, str):
        images = _dataset_images(calibration, data_dir, download)
    elif isinstance(calibration, np.ndarray) or hasattr(calibration, "__array__"):
        images = calibration
    else:
        images = _stream_images(calibration)
    return _checked_images(images, input_shape)


def _stream_images(stream):
    """The images of a finite stream of batches, refusing an endless one."""
    import itertools

    cardinality = getattr(stream, "cardinality", None)
    if cardinality is not None and int(cardinality()) == -1:  # tf.data.INFINITE
        raise ValueError(
            "The calibration dataset repeats without end (its cardinality is "
            "infinite): pass a finite one, e.g. dataset.take(32) batches."
        )
    if hasattr(stream, "as_numpy_iterator"):
        stream = stream.as_numpy_iterator()
    try:
        batches = iter(stream)
    except TypeError:
        raise ValueError(
            f"`calibration` must be an array of images, a dataset or iterable of "
            f"image batches, or 'DATASET[:N]'. Received: {type(stream).__name__}."
        ) from None
    images, count = [], 0
    for batch in itertools.islice(batches, MAX_CALIBRATION + 1):
        batch = np.asarray(batch[0] if isinstance(batch, tuple | list) else batch)
        images.append(batch)
        count += len(batch) if batch.ndim else 1
        if count > MAX_CALIBRATION:
            raise ValueError(
                f"The calibration stream gave more than {MAX_CALIBRATION} "
                f"examples (it may have no end): pass a finite one of a few "
                f"hundred, e.g. dataset.take(N)."
            )
    if not images:
        raise ValueError("The calibration dataset is empty: pass some images.")
    try:
        return np.concatenate(images)
    except ValueError as error:
        raise ValueError(
            f"The calibration batches differ in shape ({error}); every batch "
            f"must hold images of the model's input size."
        ) from None


def _checked_images(images, input_shape):
    images = np.asarray(images)
    if images.dtype.kind not in "biuf":
        raise ValueError(
            f"Calibration images must be numbers (uint8 or float arrays). "
            f"Received dtype {images.dtype}."
        )
    images = images.astype("float32")
    wanted = tuple(input_shape[1:])
    fits = images.ndim == len(wanted) + 1 and all(
        w is None or w == g for w, g in zip(wanted, images.shape[1:], strict=True)
    )
    if not fits or len(images) == 0:
        raise ValueError(
            f"Calibration images of shape {images.shape} do not fit the model's "
            f"input {(None, *wanted)}: they must be at least one image of its "
            f"size with {wanted[-1]} channels. Calibrate with the dataset the "
            f"model was trained on."
        )
    if len(images) > MAX_CALIBRATION:
        raise ValueError(
            f"{len(images)} calibration images; pass at most {MAX_CALIBRATION} "
            f"(a few hundred settle the ranges)."
        )
    bad = ~np.isfinite(images)
    if bad.any():
        which = np.flatnonzero(bad.reshape(len(images), -1).any(axis=1))
        raise ValueError(
            f"{len(which)} calibration image(s) hold NaN or infinite values "
            f"(the first: index {which[0]}); activation ranges need finite "
            f"images. Remove them or fix their preprocessing."
        )
    return images


def _dataset_images(text, data_dir, download):
    from keras_igc import data

    name, count = parse_calibration(text)
    if name not in data.DATASETS:
        raise ValueError(
            f"Unknown calibration dataset {name!r} (from {text!r}). Choose one "
            f"of {sorted(data.DATASETS)}, optionally with ':N' examples."
        )
    return data.first_images(name, "train", count, data_dir=data_dir, download=download)


def litert(saved_model, path, scheme, images, int8_io=False, batch=8):
    """Write a quantized LiteRT file converted from `saved_model`."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model, signature_keys=["serve"]
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if scheme == "int8":

        def representative():
            for start in range(0, len(images), batch):
                yield [images[start : start + batch]]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    with open(path, "wb") as f:
        f.write(converter.convert())


def onnx(float_path, path, scheme, images, batch=8, kept_float=None):
    """Write a quantized ONNX file from the float one: QDQ with per-channel
    weight scales (`"int8"`), or int8 weights alone (`"dynamic"`). Each
    convolution whose int8 form ONNX Runtime runs slower stays float
    (`INT8_RULES`), or those of `kept_float` (`{node:
    why}`) instead; returns `{node: why}` of those."""
    import onnx as onnx_lib
    from onnxruntime import quantization as q

    graph = onnx_lib.load(float_path).graph
    if kept_float is None:
        kept_float = _onnx_kept_float(graph)
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
    return kept_float


# Which convolutions of an 8-bit file run in int8: a rule per runtime over
# its graph's convolutions (`keras_igc.forms.Geometry`), each measured in its
# results file. LiteRT's XNNPACK runs every convolution fast in int8.
# ONNX Runtime's int8 grouped convolution keeps up with its float one from
# groups this wide on (MSGC's 4-head layers, 64 and more inputs a group, ran
# as fast in int8; IGC's groups of 1-2 channels ran 1.3-2.3x slower).
INT8_WIDE_GROUP = 16


def _litert_int8(g):
    """Every convolution in int8 (XNNPACK's kernels, grouped ones too)."""
    return "int8", "litert: XNNPACK's int8 convolutions, grouped ones included"


def _onnx_int8(g):
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


# `forms.Rule`s of kind "int8": `decide(geometry)` -> `("int8" | "float", why)`.
INT8_RULES = {
    "litert": forms.Rule(
        "litert", "int8", _litert_int8, "benchmarks/results/quantize-cpu.json"
    ),
    "onnx": forms.Rule(
        "onnx", "int8", _onnx_int8, "benchmarks/results/quantize-classes-cpu.json"
    ),
}


def int8_form(runtime, geometry):
    """`(form, why)`: `"int8"`, or `"float"` where `runtime`'s integer kernel
    for a convolution of `geometry` measured slower (`INT8_RULES`)."""
    if runtime not in INT8_RULES:
        raise ValueError(
            f"No 8-bit files for runtime {runtime!r}; they are written for "
            f"{sorted(INT8_RULES)}."
        )
    return INT8_RULES[runtime].decide(geometry)


def int8_rules_table():
    """`INT8_RULES` as Markdown: runtime, rule, measured in."""
    lines = ["| runtime | 8-bit convolutions | measured in |", "|---|---|---|"]
    lines += [
        f"| {r.runtime} | {r.summary} | `{r.source}` |" for r in INT8_RULES.values()
    ]
    return "\n".join(lines)


def _onnx_kept_float(graph):
    """`{node name: why}` of the convolutions the int8 rule of `onnx`
    (`INT8_RULES`) leaves in float."""
    kept = {}
    for node, geometry in onnx_convolutions(graph):
        form, why = int8_form("onnx", geometry)
        if form == "float":
            kept[node.name] = why
    return kept


def onnx_convolutions(graph):
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


def gate_tensors(fmt, path, layers):
    """`{layer: tensor name}`: each MSGC layer's gate decisions in an artifact.

    The decisions are named after the layer's scope (`_GATE_DECISION`): its
    name, where TensorFlow may add a suffix `_N` of its choosing. With Keras'
    default names a scope can fit two layers (`conv_1` is `conv` suffixed, or
    `conv_1` itself), so a layer takes a scope only when it is the one left
    to it: each layer with a single candidate takes it, and is struck from
    the others', until all are placed. Nothing is guessed: counting flips on
    another layer's tensor would be silently wrong.
    """
    from keras_igc.export import litert as litert_runtime
    from keras_igc.export import onnx as onnx_runtime

    runtime = {"litert": litert_runtime, "onnx": onnx_runtime}[fmt]
    # LiteRT names reshaped copies of the decisions after the comparison
    # too; each holds the same values, the first will do.
    scopes = {}
    for name in runtime.tensor_names(path):
        found = _GATE_DECISION.search(name)
        if found:
            scopes.setdefault(found.group(1), name)
    candidates = {
        layer: {s for s in scopes if re.fullmatch(rf"{re.escape(layer)}(_\d+)?", s)}
        for layer in layers
    }
    placed = {}
    while candidates:
        sure = {layer: c for layer, c in candidates.items() if len(c) == 1}
        taken = [scope for c in sure.values() for scope in c]
        if not sure or len(set(taken)) < len(taken):
            raise RuntimeError(
                f"The gate decisions of MSGC layers {sorted(candidates)} could "
                f"not each be told apart in {path} (candidates: {candidates}), "
                f"so their flips cannot be counted. Compare the file with the "
                f"float model on your own examples instead."
            )
        for layer, (scope,) in sure.items():
            placed[layer] = scopes[scope]
            del candidates[layer]
            for others in candidates.values():
                others.discard(scope)
    return placed


def gate_logits(fmt, path):
    """The type of the mask logits that the gates of an 8-bit artifact
    compare with the threshold: `"int8"` (LiteRT compares the int8 values,
    ONNX Runtime their dequantized copies: a logit within a quantization step
    of the threshold can decide the other way than in float) or
    `"float32"`; None without MSGC gates."""
    if fmt == "litert":
        from keras_igc import keras_internals
        from keras_igc.export.litert import make_interpreter

        interpreter = make_interpreter(model_path=path)
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        types = {
            np.dtype(tensors[op["inputs"][0]]["dtype"]).name
            for op in keras_internals.litert_ops(interpreter)
            if op["op_name"] == "GREATER_EQUAL"
            and _GATE_DECISION.search(tensors[op["outputs"][0]]["name"])
        }
    else:
        import onnx as onnx_lib

        graph = onnx_lib.load(path).graph
        dequantized = {
            n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"
        }
        types = {
            "int8" if node.input[0] in dequantized else "float32"
            for node in graph.node
            if node.op_type == "GreaterOrEqual"
            and _GATE_DECISION.search(node.output[0])
        }
    if not types:
        return None
    return "int8" if "int8" in types else "float32"


def float_ops(fmt, path):
    """The operations of a quantized artifact that compute in float, by type:
    `{op: count}` (what the runtime had no integer kernel for, or what the
    scheme leaves float)."""
    if fmt == "litert":
        from keras_igc import keras_internals
        from keras_igc.export.litert import make_interpreter

        interpreter = make_interpreter(model_path=path)
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        found = {}
        for op in keras_internals.litert_ops(interpreter):
            if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
                continue
            outputs = [tensors[i]["dtype"] for i in op["outputs"] if i in tensors]
            if any(np.dtype(d) == np.float32 for d in outputs):
                found[op["op_name"]] = found.get(op["op_name"], 0) + 1
        return found
    import onnx as onnx_lib

    graph = onnx_lib.load(path).graph
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

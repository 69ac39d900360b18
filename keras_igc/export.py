"""Ship IGC networks: SavedModel, LiteRT and ONNX exports, folding and a check.

`export(model, directory)` writes the artifacts that run without keras_igc:

- `saved_model/`: a SavedModel with a batch-polymorphic `serve` signature, for
  `tf.saved_model.load` and `keras.layers.TFSMLayer`;
- `model.tflite`: LiteRT, builtin ops where the converter manages, the
  select-TF fallback otherwise (the result names the ops that needed it);
- `model.onnx`: ONNX through Keras' exporter and tf2onnx (the `export` extra).

Before exporting, `prepare` clones the model so that every block runs
anywhere: grouped convolutions take their exact CPU forms (the native grouped
convolution is an XLA-compiled function that tf2onnx turns into an invalid
graph), and with `fold=True` each BatchNorm folds into the convolution before
it. `check` loads each artifact in its own runtime and compares it with the
Keras model. Export needs the TensorFlow backend.
"""

import collections
import dataclasses
import json
import os
import shutil
import tempfile
import time
import warnings

import keras
import numpy as np

from keras_igc import ops as igc_ops
from keras_igc.complexity import model_complexity
from keras_igc.layers import GroupConv2D, IGCConv2D
from keras_igc.layers.igc_conv2d import select_implementation
from keras_igc.validation import load_keras_model

# Artifact name inside the export directory, by format.
FORMATS = {"savedmodel": "saved_model", "litert": "model.tflite", "onnx": "model.onnx"}
DENSE_BLOCKS = ("auto", "always", "never")
REPORT_FILE = "export_report.json"


class MissingDependencyError(ImportError):
    """An optional package that a format or runtime needs is not installed."""


@dataclasses.dataclass
class FoldingReport:
    """What `prepare` changed.

    Attributes:
        folded: one dict per BatchNorm folded away: `batch_norm`, `into` (the
            layer before it) and `form` ("conv", or for an IGC block "igc"
            or "dense" when it became its dense-equivalent convolution).
        paths: the execution path of each IGC block and grouped convolution.
        before, after: `model_complexity` of the model and its prepared clone.
    """

    folded: list
    paths: dict
    before: dict
    after: dict

    def summary(self):
        forms = [entry["form"] for entry in self.folded]
        counts = ", ".join(f"{forms.count(f)} {f}" for f in sorted(set(forms)))
        return (
            f"folded {len(self.folded)} BatchNorm layers ({counts or 'none'}); "
            f"params {self.before['total_params']:,} -> "
            f"{self.after['total_params']:,}, MACs {self.before['macs']:,} -> "
            f"{self.after['macs']:,}"
        )


@dataclasses.dataclass
class ExportResult:
    """Paths of the written artifacts and what the export did.

    Attributes:
        artifacts: path by format.
        sizes: bytes on disk by format.
        folding: the `FoldingReport` of the exported clone.
        litert_select_ops: TensorFlow ops the LiteRT file runs through the
            select-TF fallback (empty: builtin ops only).
    """

    artifacts: dict
    sizes: dict
    folding: FoldingReport
    litert_select_ops: list

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2)


def prepare(model, fold=True, dense_blocks="auto"):
    """A clone of `model` that exports and runs on any runtime, with equal outputs.

    Every IGC block takes its fastest CPU path (`implementation="auto"` as
    chosen on a CPU, never the XLA-compiled grouped convolution), and every
    grouped `Conv2D` becomes a `GroupConv2D` with the same weights. With
    `fold`, each BatchNormalization that directly follows a `Conv2D`,
    `GroupConv2D` or `IGCConv2D` (and is that layer's only consumer) folds
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
            convolution.

    Returns:
        `(clone, FoldingReport)`.
    """
    _check_model(model)
    if dense_blocks not in DENSE_BLOCKS:
        raise ValueError(
            f"`dense_blocks` must be one of {DENSE_BLOCKS}. Received: "
            f"dense_blocks={dense_blocks!r}."
        )
    if isinstance(model, keras.Sequential):
        # clone_model replaces calls (BatchNorm by Identity) in graphs only.
        (inputs,), (outputs,) = model.inputs, model.outputs
        model = keras.Model(inputs, outputs, name=model.name)
    pairs = _batch_norm_pairs(model) if fold else {}
    folded_norms = {bn.name: producer for producer, bn in pairs.items()}
    forms = {}
    with igc_ops.cpu_paths():
        for name in pairs:
            forms[name] = _fold_form(model.get_layer(name), dense_blocks)

        def clone_layer(layer):
            if layer.name in folded_norms:
                return keras.layers.Identity(name=layer.name)
            config = layer.get_config()
            if _is_mixed(layer):
                config["dtype"] = "float32"
            cls = type(layer)
            if isinstance(layer, IGCConv2D):
                config["implementation"] = "auto"
                if forms.get(layer.name) == "dense":
                    return keras.layers.Conv2D.from_config(_dense_config(layer))
            elif isinstance(layer, keras.layers.Conv2D) and layer.groups > 1:
                cls = GroupConv2D
            if layer.name in pairs:
                config["use_bias"] = True
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
            layer.set_weights(_folded_weights(original, pairs[layer.name], layer))
        else:
            layer.set_weights(original.get_weights())
    # Keras' exporters want a model that has run once.
    clone(np.zeros((1, *model.input_shape[1:]), "float32"))
    report = FoldingReport(
        folded=[
            {"batch_norm": bn.name, "into": name, "form": forms[name]}
            for name, bn in pairs.items()
        ],
        paths=_paths(clone),
        before=model_complexity(model),
        after=model_complexity(clone),
    )
    return clone, report


def export(
    model,
    directory,
    formats=tuple(FORMATS),
    *,
    fold=True,
    dense_blocks="auto",
    overwrite=False,
    verbose=True,
):
    """Export a model to SavedModel, LiteRT and ONNX artifacts in `directory`.

    Args:
        model: a built Functional or Sequential Keras model, or a source
            `load_source` accepts (a `.keras` path or an application name).
        directory: folder for the artifacts (created if missing). Other files
            in it are left alone.
        formats: any of `"savedmodel"`, `"litert"`, `"onnx"`.
        fold, dense_blocks: see `prepare`.
        overwrite: replace artifacts that exist; otherwise an existing one is
            an error and nothing is written.
        verbose: print what was written.

    Returns:
        An `ExportResult`, also written as `export_report.json`.

    Example:

    >>> import tempfile, keras, keras_igc
    >>> from keras_igc import export
    >>> model = keras.Sequential([
    ...     keras.Input((16, 16, 8)),
    ...     keras_igc.IGCConv2D(4, 2, padding="same", use_bias=False),
    ...     keras.layers.BatchNormalization(),
    ...     keras.layers.ReLU(),
    ... ])
    >>> result = export.export(model, tempfile.mkdtemp(), ["savedmodel"],
    ...                        verbose=False)
    >>> result.folding.folded[0]["form"]
    'dense'
    """
    _check_backend()
    model = load_source(model) if isinstance(model, str) else model
    formats = _check_formats(formats)
    if "onnx" in formats:
        _require("tf2onnx", "ONNX export")
    artifacts = {fmt: os.path.join(directory, FORMATS[fmt]) for fmt in formats}
    existing = [p for p in artifacts.values() if os.path.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(
            f"Export would replace {existing}. Choose another directory, remove "
            f"them, or pass overwrite=True (--overwrite) to replace them."
        )
    prepared, folding = prepare(model, fold=fold, dense_blocks=dense_blocks)
    os.makedirs(directory, exist_ok=True)
    select_ops = []
    # Artifacts are staged and moved into place only when every format has
    # succeeded, so a failed export leaves the directory as it was.
    with tempfile.TemporaryDirectory(dir=directory, prefix=".export-") as scratch:
        staged = {fmt: os.path.join(scratch, FORMATS[fmt]) for fmt in FORMATS}
        if "savedmodel" in formats or "litert" in formats:
            prepared.export(
                staged["savedmodel"], format="tf_saved_model", verbose=False
            )
        if "litert" in formats:
            select_ops = _write_litert(staged["savedmodel"], staged["litert"])
        if "onnx" in formats:
            _write_onnx(prepared, staged["onnx"])
        for path in existing:
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        for fmt, path in artifacts.items():
            os.replace(staged[fmt], path)
    result = ExportResult(
        artifacts=artifacts,
        sizes={fmt: _disk_size(path) for fmt, path in artifacts.items()},
        folding=folding,
        litert_select_ops=select_ops,
    )
    with open(os.path.join(directory, REPORT_FILE), "w") as f:
        f.write(result.to_json())
    if verbose:
        print(folding.summary())
        for fmt, path in artifacts.items():
            print(f"{fmt}: {path} ({result.sizes[fmt] / 2**20:.2f} MiB)")
        if select_ops:
            print(f"litert: select-TF fallback for {select_ops}")
    return result


def check(model, artifacts, batch_sizes=(1, 3), runs=20, seed=0):
    """Run each artifact in its own runtime against the Keras model.

    Args:
        model: the Keras model the artifacts came from (a source string is
            loaded with `load_source`).
        artifacts: path by format (`ExportResult.artifacts`), or an export
            directory.
        batch_sizes: batch sizes to compare and time.
        runs: timed calls per artifact and batch size (median reported).
        seed: seed of the random inputs.

    Returns:
        One dict per format and batch size: `format`, `batch`,
        `max_abs_diff` against the Keras model, `max_abs_output` (the scale
        of the outputs, to read the difference against), `latency_ms`
        (median), and `ratio` (latency over the Keras model's in the same run; the Keras
        row has format "keras").
    """
    _check_backend()
    model = load_source(model) if isinstance(model, str) else model
    if isinstance(artifacts, str):
        artifacts = {
            fmt: os.path.join(artifacts, name)
            for fmt, name in FORMATS.items()
            if os.path.exists(os.path.join(artifacts, name))
        }
        if not artifacts:
            raise FileNotFoundError(
                f"No artifact ({', '.join(FORMATS.values())}) in the export "
                f"directory. Export first, e.g. keras_igc.export.export(model, "
                f"directory)."
            )
    runners = {"keras": lambda: model.predict_on_batch}
    runners.update({fmt: _RUNTIMES[fmt](path) for fmt, path in artifacts.items()})
    rng = np.random.default_rng(seed)
    rows = []
    for batch in batch_sizes:
        x = rng.normal(size=(batch, *model.input_shape[1:])).astype("float32")
        expected = np.asarray(model(x, training=False))
        keras_ms = None
        for fmt, make in runners.items():
            run = make()
            y = np.asarray(run(x))
            latency = _median_ms(run, x, runs)
            keras_ms = keras_ms or latency
            rows.append(
                {
                    "format": fmt,
                    "batch": batch,
                    "max_abs_diff": float(np.max(np.abs(y - expected))),
                    "max_abs_output": float(np.max(np.abs(expected))),
                    "latency_ms": latency,
                    "ratio": latency / keras_ms,
                }
            )
    return rows


def format_check(rows):
    """`check` rows as a Markdown table."""
    lines = [
        "| format | batch | max abs diff | max abs output | latency ms | ratio to "
        "Keras |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['format']} | {r['batch']} | {r['max_abs_diff']:.2e} | "
        f"{r['max_abs_output']:.3g} | "
        f"{r['latency_ms']:.2f} | {r['ratio']:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)


def load_source(source, weights=None, **kwargs):
    """A model from a `.keras` file or an application name.

    Args:
        source: a `.keras` path, a builder of `keras_igc.applications`
            ("IGCNet38") or a registered name ("IGC-L24M2+Ident.").
        weights: optional weights file for an application.
        **kwargs: builder arguments for an application (e.g. `depth`).
    """
    if source.endswith(".keras"):
        if not os.path.exists(source):
            raise FileNotFoundError(f"No such model file: {source!r}.")
        if weights is not None or kwargs:
            raise ValueError(
                "A .keras file carries its own weights and configuration; "
                "`weights` and builder arguments apply to application names only."
            )
        return load_keras_model(source)
    from keras_igc import applications

    if source in applications.__all__ and source[0].isupper():
        return getattr(applications, source)(weights=weights, **kwargs)
    return applications.get_model(source, weights=weights, **kwargs)


def _check_backend():
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"keras_igc.export needs the TensorFlow backend (SavedModel and "
            f"LiteRT are TensorFlow formats). Running on "
            f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow."
        )


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a keras.Model to export. Received: {type(model).__name__}."
        )
    if not isinstance(model, keras.Sequential) and not hasattr(model, "_nodes"):
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


def _check_formats(formats):
    formats = [formats] if isinstance(formats, str) else list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(
            f"Unknown export format(s) {unknown or formats!r}. Choose from "
            f"{list(FORMATS)}."
        )
    return formats


def _require(module, purpose):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{purpose} needs the `{module}` package, which is not installed. "
            f'Install the extra: pip install "keras-igc[export]".'
        ) from error


def _batch_norm_pairs(model):
    """`{producer name: BatchNormalization}` for every foldable pair."""
    # Only this graph's nodes count: a loaded layer also keeps the node of
    # the call that built it.
    nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
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
            isinstance(producer, keras.layers.Conv2D)
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


def _fold_form(layer, dense_blocks):
    if not isinstance(layer, IGCConv2D):
        return "conv"
    if dense_blocks == "auto":
        path = select_implementation(
            layer.primary_partitions,
            layer.secondary_partitions,
            layer.primary.kernel.shape[2] * layer.primary_partitions,
            layer.kernel_size,
            layer.strides,
        )
        return "dense" if path == "dense" else "igc"
    return "dense" if dense_blocks == "always" else "igc"


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
        kernel = np.asarray(layer.kernel, "float64") * scale
        weights = [kernel, bias * scale + shift]
    return [np.asarray(w, "float32") for w in weights]


def _paths(model):
    return {
        layer.name: layer.active_implementation
        for layer in model.layers
        if isinstance(layer, IGCConv2D | GroupConv2D)
    }


def _is_mixed(layer):
    policy = getattr(layer, "dtype_policy", None)
    return policy is not None and policy.name.startswith("mixed")


def _write_litert(saved_model, path):
    """Convert with builtin ops; fall back to select-TF ops only if needed."""
    import tensorflow as tf

    def convert(op_sets):
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model, signature_keys=["serve"]
        )
        converter.target_spec.supported_ops = op_sets
        return converter.convert()

    select_ops = []
    try:
        flatbuffer = convert([tf.lite.OpsSet.TFLITE_BUILTINS])
    except Exception:
        flatbuffer = convert(
            [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        )
        interpreter = _litert_interpreter(model_content=flatbuffer)
        select_ops = sorted(
            {
                op["op_name"].removeprefix("Flex")
                for op in interpreter._get_ops_details()
                if op["op_name"].startswith("Flex")
            }
        )
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return select_ops


def _write_onnx(model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.export(path, format="onnx", verbose=False)
    onnx = _require("onnx", "ONNX export")
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


def _litert_interpreter(**kwargs):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return tf.lite.Interpreter(**kwargs)
    return Interpreter(**kwargs)


def _savedmodel_runner(path):
    def make():
        import tensorflow as tf

        loaded = tf.saved_model.load(path)  # owns the variables `serve` reads
        return lambda x: loaded.serve(x).numpy()

    return make


def _litert_runner(path):
    def make():
        interpreter = _litert_interpreter(model_path=path)
        (source,), (target,) = (
            interpreter.get_input_details(),
            interpreter.get_output_details(),
        )
        shape = [None]

        def run(x):
            if shape[0] != x.shape:
                interpreter.resize_tensor_input(source["index"], x.shape)
                interpreter.allocate_tensors()
                shape[0] = x.shape
            interpreter.set_tensor(source["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(target["index"])

        return run

    return make


def _onnx_runner(path):
    def make():
        ort = _require("onnxruntime", "Running the ONNX artifact")
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]

    return make


_RUNTIMES = {
    "savedmodel": _savedmodel_runner,
    "litert": _litert_runner,
    "onnx": _onnx_runner,
}


def _median_ms(run, x, runs):
    run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def _disk_size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )

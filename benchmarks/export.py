"""Size, CPU latency and exactness of exported IGC networks, against PyTorch.

    python -m benchmarks.export               # both networks, 30 runs each
    python -m benchmarks.export --runs 10 --networks IGCNet38
    python -m benchmarks.export --batches 2 4 8 32 --output sweep.json
    python -m benchmarks.export --torch-compile   # torch.compile as a peer too

Networks: IGCNet38 (CIFAR, batch 1 and 64), IGC-L100M2+Ident. (ImageNet,
224x224, batch 1 and 16) and IGCV3-1 (224x224, batch 1 and 32; `--batches`
replaces the lists), logits, BatchNorm
statistics of one random batch so that inference-mode activations stay in
range. Each is exported by `keras_igc.export.export` (every format with its
own block forms) and every artifact runs in its runtime
(`keras_igc.export.check`: SavedModel in TensorFlow, LiteRT with XNNPACK,
ONNX in ONNX Runtime), beside two PyTorch peers with the same weights (the
IGC networks' layer-for-layer twin `torch_twin.KerasTwin`; for IGCV3,
pytorchcv's own `igcv3_w1`, the network its users run):

- PyTorch eager, `torch.no_grad`, in its faster layout (NCHW or
  channels_last);
- the same module exported with PyTorch's own ONNX exporter and run in ONNX
  Runtime with the same session options as keras_igc's ONNX file;
- with `--torch-compile`, the module under `torch.compile` (Inductor) in
  channels_last.

Every time is a median over `--runs` calls in the same process, the runtimes
taking turns of an untimed and four timed calls (the machine is shared and
drifts); ratios are to the fastest peer of that network and batch.
Differences are relative to the largest logit, from the Keras model and
from the same network computed in float64 (what float32 rounding alone
does to any implementation, Keras' included). Writes
benchmarks/results/export-cpu.json. Needs the `export` and `bench` extras.
"""

import argparse
import os
import platform
import tempfile
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.output import write_json  # noqa: E402
from benchmarks.timing import taking_turns  # noqa: E402
from keras_igc import applications, export  # noqa: E402
from keras_igc.export.runtimes import RUNTIMES  # noqa: E402

# name: (builder, input shape, batch sizes, the PyTorch peer of a built model).
NETWORKS = {
    "IGCNet38": (applications.IGCNet38, (32, 32, 3), (1, 64), "twin"),
    "IGC-L100M2+Ident.": (applications.IGCNetL100M2, (224, 224, 3), (1, 16), "twin"),
    "IGCV3-1": (applications.IGCV3, (224, 224, 3), (1, 32), "pytorchcv"),
}


def peer(model, kind):
    """The PyTorch network with `model`'s weights: pytorchcv's own IGCV3, or
    the Keras graph's layer-for-layer twin (`torch_twin.KerasTwin`)."""
    from benchmarks import torch_twin

    if kind == "pytorchcv":
        return torch_twin.pytorchcv_igcv3(model)
    return torch_twin.KerasTwin(model).eval()


def calibrated(builder, shape):
    model = builder(classifier_activation=None)
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # moving statistics := this batch's
    x = np.random.default_rng(0).normal(size=(8, *shape)).astype("float32")
    model(x, training=True)
    for layer in norms:
        layer.momentum = 0.99
    return model


def float64_twin(model, builder):
    """The same network and weights computing in float64: the reference that
    shows how far float32 rounding alone takes any implementation."""
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        twin = builder(classifier_activation=None)
    finally:
        keras.config.set_dtype_policy(policy)
    twin.set_weights(model.get_weights())
    return twin


def runners(model, artifacts, directory, twin, compiled=False):
    """`{name: (predict, layout)}`: every artifact in its runtime, Keras, and
    the PyTorch peer `twin` (eager in both layouts, its own ONNX export in
    ORT, and with `compiled` `torch.compile` of channels_last)."""
    import onnxruntime as ort

    from benchmarks import torch_twin

    found = {"keras": (model.predict_on_batch, "nhwc")}
    for fmt, path in artifacts.items():
        found[fmt] = (RUNTIMES[fmt].runner(path)(), "nhwc")
    path = torch_onnx(twin, model, directory)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    found["torch onnx in ORT"] = (lambda a: session.run(None, {"x": a})[0], "nchw")
    found.update(torch_twin.eager_runners(twin, "torch eager"))
    if compiled:
        found.update(torch_twin.compiled_runner(twin))
    return found, os.path.getsize(path)


def torch_onnx(twin, model, directory):
    """`twin` exported by `torch.onnx` (NCHW input "x", any batch) into
    `directory`/torch.onnx; its path."""
    import torch

    path = os.path.join(directory, "torch.onnx")
    sample = torch.zeros(1, model.input_shape[3], *model.input_shape[1:3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            twin, (sample,), path, dynamo=False, input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )  # fmt: skip
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS))
    parser.add_argument(
        "--batches", nargs="+", type=int, help="batch sizes instead of each network's"
    )
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="add the twin under torch.compile (channels_last) to the peers",
    )
    parser.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(__file__), "results", "export-cpu.json"),
    )
    args = parser.parse_args(argv)
    if args.batches and min(args.batches) < 1:
        parser.error(f"--batches must be positive, got {args.batches}")
    results = {"machine": platform.processor() or platform.machine(), "rows": []}
    print(
        "| network | batch | runtime | ms | / fastest peer | max diff / max logit "
        "| float64 diff / max logit | MiB |\n|---|---:|---|---:|---:|---:|---:|---:|"
    )
    for name in args.networks:
        builder, shape, batches, peer_kind = NETWORKS[name]
        model = calibrated(builder, shape)
        exact = float64_twin(model, builder)
        with tempfile.TemporaryDirectory() as directory:
            exported = export.export(model, directory, verbose=False)
            found, torch_bytes = runners(
                model,
                exported.artifacts,
                directory,
                peer(model, peer_kind),
                args.torch_compile,
            )
            sizes = {**exported.sizes, "torch onnx in ORT": torch_bytes}
            # The PyTorch peers: every runner but Keras and keras-igc's files.
            peers = set(found) - {"keras", *exported.artifacts}
            results[name] = {
                fmt: {
                    "summary": report.summary(),
                    "blocks": report.blocks,
                    "grouped_convs": report.grouped_convs,
                }
                for fmt, report in exported.folding.items()
            }
            for batch in args.batches or batches:
                x = np.random.default_rng(1).normal(size=(batch, *shape))
                x = x.astype("float32")
                expected = np.asarray(model(x, training=False))
                scale = float(np.max(np.abs(expected)))
                reference = np.asarray(exact(x.astype("float64"), training=False))
                measured = taking_turns(found, x, args.runs)
                fastest = min(measured[peer][0] for peer in peers)
                for runtime, (ms, output) in measured.items():
                    diff = float(np.max(np.abs(output - expected)))
                    off = float(np.max(np.abs(output - reference))) / scale
                    row = dict(
                        network=name, batch=batch, runtime=runtime, ms=ms,
                        ratio_to_fastest_peer=ms / fastest, max_abs_diff=diff,
                        relative_diff=diff / scale, relative_diff_to_float64=off,
                        bytes=sizes.get(runtime),
                    )  # fmt: skip
                    results["rows"].append(row)
                    size = sizes.get(runtime)
                    mib = "" if size is None else f"{size / 2**20:.2f}"
                    print(
                        f"| {name} | {batch} | {runtime} | {ms:.2f} | "
                        f"{ms / fastest:.2f} | {diff / scale:.1e} | {off:.1e} | "
                        f"{mib} |",
                        flush=True,
                    )
    write_json(args.output, results)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

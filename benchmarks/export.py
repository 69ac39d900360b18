"""Size, CPU latency and exactness of IGCNet38's exported artifacts.

    python benchmarks/export.py               # IGCNet38, batch 1 and 64
    python benchmarks/export.py --runs 20     # quicker

Exports `keras_igc.applications.IGCNet38` (logits, BatchNorm statistics of one
random batch so that inference-mode activations stay in range) with and
without folding, runs every artifact in its runtime (`keras_igc.export.check`)
and reports median latency as a ratio to Keras' `predict_on_batch` and to
PyTorch's eager twin of the network (`torch_twin.TorchIGCNet(12, 24, 2)`, in
`torch.no_grad`, in its faster layout of NCHW and channels_last), all measured
in the same run. Writes benchmarks/results/export-cpu.json. Needs the
`export` and `bench` extras (tf2onnx, onnxruntime; torch).
"""

import argparse
import json
import os
import platform
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_igc import applications, export  # noqa: E402

BATCHES = (1, 64)


def torch_best_ms(batch_sizes, runs):
    """`{batch: (ms, layout)}`: PyTorch's eager IGCNet38 in its faster layout."""
    import statistics
    import sys
    import time

    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_twin

    best = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        module = torch_twin.TorchIGCNet(12, 24, 2).eval().to(memory_format=layout)
        for batch in batch_sizes:
            x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=layout)
            times = []
            with torch.no_grad():
                for i in range(runs + 3):
                    start = time.perf_counter()
                    module(x)
                    if i >= 3:  # warm-up calls are not timed
                        times.append((time.perf_counter() - start) * 1e3)
            ms = statistics.median(times)
            name = "channels_last" if layout == torch.channels_last else "NCHW"
            if batch not in best or ms < best[batch][0]:
                best[batch] = (ms, name)
    return best


def calibrated_igcnet38():
    model = applications.IGCNet38(classifier_activation=None)
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # moving statistics := this batch's
    x = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype("float32")
    model(x, training=True)
    for layer in norms:
        layer.momentum = 0.99
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(__file__), "results", "export-cpu.json"),
    )
    args = parser.parse_args()
    model = calibrated_igcnet38()
    results = {"machine": platform.processor() or platform.machine(), "rows": []}
    for fold in (True, False):
        with tempfile.TemporaryDirectory() as directory:
            exported = export.export(model, directory, fold=fold, verbose=False)
            rows = export.check(model, exported.artifacts, BATCHES, runs=args.runs)
        torch_ms = torch_best_ms(BATCHES, args.runs)
        for row in rows:
            ms, layout = torch_ms[row["batch"]]
            row.update(
                fold=fold, bytes=exported.sizes.get(row["format"]),
                torch_ms=ms, torch_layout=layout,
                ratio_to_torch=row["latency_ms"] / ms,
            )  # fmt: skip
        results["rows"] += rows
        results[f"folding={fold}"] = exported.folding.summary()
        print(f"\nfold={fold}: {exported.folding.summary()}")
        print(f"select-TF ops: {exported.litert_select_ops or 'none'}")
        print(export.format_check(rows))
        for row in rows:
            print(
                f"{row['format']:>10} batch {row['batch']:>3}: "
                f"{row['ratio_to_torch']:.2f}x PyTorch eager "
                f"({row['torch_ms']:.2f} ms, {row['torch_layout']})"
            )
        print({fmt: f"{size / 2**20:.2f} MiB" for fmt, size in exported.sizes.items()})
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

"""Size, CPU latency and exactness of IGCNet38's exported artifacts.

    python benchmarks/export.py               # IGCNet38, batch 1 and 8
    python benchmarks/export.py --runs 20     # quicker

Exports `keras_igc.applications.IGCNet38` (logits, BatchNorm statistics of one
random batch so that inference-mode activations stay in range) with and
without folding, runs every artifact in its runtime (`keras_igc.export.check`)
and reports median latency as a ratio to Keras' `predict_on_batch` measured in
the same run. Writes benchmarks/results/export-cpu.json. Needs the `export`
extra (tf2onnx, onnxruntime).
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
            rows = export.check(model, exported.artifacts, (1, 8), runs=args.runs)
        for row in rows:
            row.update(fold=fold, bytes=exported.sizes.get(row["format"]))
        results["rows"] += rows
        results[f"folding={fold}"] = exported.folding.summary()
        print(f"\nfold={fold}: {exported.folding.summary()}")
        print(f"select-TF ops: {exported.litert_select_ops or 'none'}")
        print(export.format_check(rows))
        print({fmt: f"{size / 2**20:.2f} MiB" for fmt, size in exported.sizes.items()})
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

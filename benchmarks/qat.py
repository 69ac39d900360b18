"""Quantization-aware training against post-training int8, on digits.

    python -m benchmarks.qat         # IGC-L24M2 (depth 8), IGCV3-0.25, MSGC-ResNet18
    python -m benchmarks.qat --epochs 15 --qat-epochs 3 --networks IGCV3-0.25

Each network is trained on scikit-learn's digits (offline) with
`training.train` (the CLI's recipe) for `--epochs`, then:

- PTQ: exported with `export.export(quantize="int8", calibration="digits:256")`;
- QAT: fine-tuned under int8 rounding for `--qat-epochs` with
  `training.train(float_model, quantize_aware=True)` (what `keras-igc train
  --quantize-aware --from` runs: the QAT recipe, BatchNorm frozen for the
  second half), then exported with `quantize="int8"` and no calibration.

For every Keras model and file (LiteRT, ONNX; float and int8) on the 360
held-out digits: test accuracy, top-1 agreement with the float model, and for
the QAT files agreement with the QAT model itself (what `--check` holds them
to). The goals of issue 42: QAT int8 at least as accurate as float, agreeing
with its own Keras model on at least 99.5 % of the examples in both
runtimes, and PTQ's disagreement with its model cut by at least 4x. For
MSGC-ResNet18 also the int8 files' gate flips (`export.check_quantized`:
the PTQ file's decisions against the float model's, the QAT file's against
the QAT model's). Writes
benchmarks/results/qat-digits.json. Needs the `export` extra.
"""

import argparse
import os
import platform
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks.output import results_path, write_json  # noqa: E402
from keras_igc import data, export, training  # noqa: E402
from keras_igc.export.runtimes import RUNTIMES  # noqa: E402

NETWORKS = {"IGC-L24M2": {"depth": 8}, "IGCV3-0.25": {}, "MSGC-ResNet18": {}}
FILES = ("litert", "onnx", "litert_int8", "onnx_int8")


def held_out():
    images, labels = [], []
    for batch, label in data.load("digits", "eval", batch_size=120):
        images.append(batch.numpy())
        labels.append(label.numpy())
    return np.concatenate(images), np.concatenate(labels)


def outputs(model, result, images):
    """`{"keras": ..., file: ...}`: each one's outputs on `images`."""
    found = {"keras": np.asarray(model.predict(images, verbose=0))}
    for fmt in FILES:
        run = RUNTIMES[fmt.removesuffix("_int8")].runner(result.artifacts[fmt])()
        found[fmt] = np.concatenate(
            [run(images[s : s + 60]) for s in range(0, len(images), 60)]
        )
    return found


def network_rows(name, options, epochs, qat_epochs, directory, images, labels):
    run = os.path.join(directory, name)
    model, _ = training.train(
        name, "digits", run, epochs=epochs, seed=0, verbose=0, **options
    )
    ptq = export.export(
        model, os.path.join(run, "exported"), ["litert", "onnx"], quantize="int8",
        calibration="digits:256", verbose=False,
    )  # fmt: skip
    qat, _ = training.train(
        model, "digits", f"{run}-qat", epochs=qat_epochs, seed=0, verbose=0,
        quantize_aware=True,
    )  # fmt: skip
    learned = export.export(
        qat, os.path.join(f"{run}-qat", "exported"), ["litert", "onnx"],
        quantize="int8", verbose=False,
    )  # fmt: skip
    float_top = outputs(model, ptq, images)
    qat_top = outputs(qat, learned, images)
    flips = {
        (method, r["format"]): r.get("gate_flips")
        for method, checked, result in (
            ("float/PTQ", model, ptq),
            ("QAT", qat, learned),
        )
        for r in export.check_quantized(checked, result.artifacts, images)
    }
    reference = float_top["keras"].argmax(-1)
    own = qat_top["keras"].argmax(-1)
    rows = []
    for method, found, result in (
        ("float/PTQ", float_top, ptq),
        ("QAT", qat_top, learned),
    ):
        for fmt, values in found.items():
            top = values.argmax(-1)
            row = {
                "network": name, "model": method, "format": fmt,
                "accuracy": float(np.mean(top == labels)),
                "agreement_with_float": float(np.mean(top == reference)),
                "agreement_with_own": float(
                    np.mean(top == (own if method == "QAT" else reference))
                ),
                "bytes": result.sizes.get(fmt),
                "gate_flips": flips.get((method, fmt)),
            }  # fmt: skip
            rows.append(row)
            agree = (row["agreement_with_float"], row["agreement_with_own"])
            flipped = row["gate_flips"]
            print(
                f"| {name} | {method} | {fmt} | {row['accuracy']:.4f} | "
                f"{agree[0]:.4f} | {agree[1]:.4f} | "
                f"{'-' if flipped is None else f'{flipped:.2%}'} |",
                flush=True,
            )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--out", default=results_path("qat-digits.json"))
    args = parser.parse_args()
    images, labels = held_out()
    print(
        "| network | model | file | accuracy | agrees with float | with own "
        "| gate flips |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name in args.networks:
            rows += network_rows(
                name, NETWORKS[name], args.epochs, args.qat_epochs, directory,
                images, labels,
            )  # fmt: skip
    write_json(args.out, {
        "machine": platform.machine(),
        "command": f"python -m benchmarks.qat --epochs {args.epochs} --qat-epochs "
                   f"{args.qat_epochs} --networks {' '.join(args.networks)}",
        "rows": rows,
    })  # fmt: skip


if __name__ == "__main__":
    main()

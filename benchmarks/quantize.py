"""8-bit exports against float and against PyTorch's int8: accuracy, speed, size.

    python -m benchmarks.quantize                       # digits, then both graphs
    python -m benchmarks.quantize --skip-speed --epochs 20
    python -m benchmarks.quantize --skip-accuracy --networks IGCV3-1 --runs 10

Accuracy (digits, scikit-learn's, offline): IGC-L24M2 (depth 8) and
IGCV3-0.25 trained with `training.train` (the CLI's recipe) for `--epochs`,
exported by `keras_igc.export.export(quantize="int8", calibration=
"digits:256")`; test accuracy of the float Keras model and of each int8 file
(LiteRT, ONNX) on the 360 held-out digits, and their top-1 agreement.

Speed and size (ImageNet graphs at random weights, BatchNorm statistics of
one random batch): IGCV3-1 and IGC-L100M2+Ident., batch 1 and 32, taking turns
in one process (`benchmarks.timing.taking_turns`): each int8 file against the
float file of its runtime, and against PyTorch's int8 peer: the PyTorch
network with the same weights (pytorchcv's igcv3_w1; the layer-for-layer twin
of IGC-L100M2) exported by `torch.onnx` and quantized by ONNX Runtime the same
way (QDQ, per-channel, calibrated on the same images). Writes
benchmarks/results/quantize-cpu.json. Needs the `export` and `bench` extras.
"""

import argparse
import os
import platform
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks.export import NETWORKS, calibrated, peer, torch_onnx  # noqa: E402
from benchmarks.output import results_path, write_json  # noqa: E402
from benchmarks.timing import taking_turns  # noqa: E402
from keras_igc import data, export, training  # noqa: E402
from keras_igc.export import quantize  # noqa: E402
from keras_igc.export.check import RUNTIMES  # noqa: E402

PAIRED = {"torch int8 onnx": "torch onnx"}  # int8 runner -> its float one
DIGITS_MODELS = {"IGC-L24M2": {"depth": 8}, "IGCV3-0.25": {}}


def digits_rows(epochs, directory):
    images, labels = [], []
    for batch, label in data.load("digits", "eval", batch_size=120):
        images.append(batch.numpy())
        labels.append(label.numpy())
    images, labels = np.concatenate(images), np.concatenate(labels)
    rows = []
    for name, options in DIGITS_MODELS.items():
        run = os.path.join(directory, name)
        model, _ = training.train(
            name, "digits", run, epochs=epochs, seed=0, verbose=0, **options
        )
        result = export.export(
            model, os.path.join(run, "exported"), ["litert", "onnx"],
            quantize="int8", calibration="digits:256", verbose=False,
        )  # fmt: skip
        logits = {"keras": np.asarray(model.predict(images, verbose=0))}
        for fmt in ("litert", "onnx", "litert_int8", "onnx_int8"):
            run_artifact = RUNTIMES[fmt.removesuffix("_int8")].runner(
                result.artifacts[fmt]
            )()
            logits[fmt] = np.concatenate(
                [run_artifact(images[s : s + 60]) for s in range(0, len(images), 60)]
            )
        float_top = logits["keras"].argmax(-1)
        for fmt, values in logits.items():
            row = {
                "network": name, "format": fmt,
                "accuracy": float(np.mean(values.argmax(-1) == labels)),
                "agreement": float(np.mean(values.argmax(-1) == float_top)),
                "bytes": result.sizes.get(fmt),
            }  # fmt: skip
            rows.append(row)
            print(
                f"| {name} | {fmt} | {row['accuracy']:.4f} | {row['agreement']:.4f} |",
                flush=True,
            )
    return rows


def torch_int8(model, kind, images, directory):
    """PyTorch's peer exported by torch.onnx, float and int8 (ORT's QDQ)."""
    path = torch_onnx(peer(model, kind), model, directory)
    int8 = os.path.join(directory, "torch_int8.onnx")
    quantize.onnx(
        path, int8, "int8", np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    )
    return path, int8


def speed_rows(names, runs, batches):
    import onnxruntime as ort

    rows = []
    for name in names:
        builder, shape, _, peer_kind = NETWORKS[name]
        model = calibrated(builder, shape)
        images = np.random.default_rng(2).normal(size=(32, *shape)).astype("float32")
        with tempfile.TemporaryDirectory() as directory:
            result = export.export(
                model, directory, ["litert", "onnx"], quantize="int8",
                calibration=images, verbose=False,
            )  # fmt: skip
            torch_float, torch8 = torch_int8(model, peer_kind, images, directory)
            found = {
                fmt: (RUNTIMES[fmt.removesuffix("_int8")].runner(path)(), "nhwc")
                for fmt, path in result.artifacts.items()
            }
            sizes = dict(result.sizes)
            for label, path in (
                ("torch onnx", torch_float),
                ("torch int8 onnx", torch8),
            ):
                session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                found[label] = (lambda a, s=session: s.run(None, {"x": a})[0], "nchw")
                sizes[label] = os.path.getsize(path)
            for batch in batches:
                x = np.random.default_rng(1).normal(size=(batch, *shape))
                measured = taking_turns(found, x.astype("float32"), runs)
                for fmt, (ms, _) in measured.items():
                    base = PAIRED.get(fmt, fmt.removesuffix("_int8"))
                    row = {
                        "network": name, "batch": batch, "format": fmt, "ms": ms,
                        "bytes": sizes[fmt],
                        "to_float": ms / measured[base][0] if fmt != base else 1.0,
                        "to_torch_int8": ms / measured["torch int8 onnx"][0],
                        "size_to_float": sizes[fmt] / sizes[base],
                    }  # fmt: skip
                    rows.append(row)
                    print(
                        f"| {name} | {batch} | {fmt} | {ms:.2f} | "
                        f"{row['to_float']:.2f} | {row['to_torch_int8']:.2f} | "
                        f"{sizes[fmt] / 2**20:.2f} |",
                        flush=True,
                    )
            rows.append(
                {"network": name, "float_ops": result.quantization["float_ops"]}
            )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--networks", nargs="*", default=["IGCV3-1", "IGC-L100M2+Ident."]
    )
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--output", default=results_path("quantize-cpu.json"))
    args = parser.parse_args(argv)
    results = {"machine": platform.processor() or platform.machine()}
    if not args.skip_accuracy:
        print("| network | format | test accuracy | agreement |\n|---|---|---:|---:|")
        with tempfile.TemporaryDirectory() as directory:
            results["digits"] = digits_rows(args.epochs, directory)
    if not args.skip_speed:
        print(
            "| network | batch | format | ms | / float | / torch int8 | MiB |\n"
            "|---|---:|---|---:|---:|---:|---:|"
        )
        results["speed"] = speed_rows(args.networks, args.runs, args.batches)
    write_json(args.output, results)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

"""Which form of an IGC block each export runtime runs fastest, on CPU.

    python benchmarks/export_forms.py [--runs 30] [--cases "L24M2 stage1" ...]

For each case (the paper's CIFAR stages of IGC-L24M2 and IGC-L4M8 at batch 1
and 64, the four ImageNet stages of IGC-L100M2 at batch 1 and 16), two
blocks `IGCConv2D -> BatchNorm -> ReLU` are exported with every block form
of `keras_igc.export.prepare` (`folding.BLOCK_FORMS`), as ONNX (run in
ONNX Runtime) and LiteRT (run with its default XNNPACK delegate), and timed
in the same process, forms alternating, medians. The fastest form per case
and runtime is the rule `keras_igc.export.folding.export_form` follows.
Writes benchmarks/results/export-forms-cpu.json and prints a Markdown table.
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_igc  # noqa: E402
from keras_igc.export import litert, onnx, prepare, savedmodel  # noqa: E402

# name: (batches, size, L, M)
CASES = {
    "L24M2 stage1": ((1, 64), 32, 24, 2),
    "L24M2 stage2": ((1, 64), 16, 24, 4),
    "L24M2 stage3": ((1, 64), 8, 24, 8),
    "L4M8 stage1": ((1, 64), 32, 4, 8),
    "L4M8 stage2": ((1, 64), 16, 4, 16),
    "L4M8 stage3": ((1, 64), 8, 4, 32),
    "L100M2 stage1": ((1, 16), 56, 100, 2),
    "L100M2 stage2": ((1, 16), 28, 100, 4),
    "L100M2 stage3": ((1, 16), 14, 100, 8),
    "L100M2 stage4": ((1, 16), 7, 100, 16),
}
FORMS = ("grouped", "grouped_primary", "dense", "igc")


def blocks(size, L, M):
    """Two IGC blocks with BatchNorm statistics of one random batch."""
    channels = L * M
    inputs = keras.Input((size, size, channels))
    x = inputs
    for _ in range(2):
        x = keras_igc.IGCConv2D(L, M, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.0)(x)
        x = keras.layers.ReLU()(x)
    model = keras.Model(inputs, x)
    sample = np.random.default_rng(0).normal(size=(4, size, size, channels))
    model(sample.astype("float32"), training=True)
    return model


def artifacts(model, form, directory):
    """`{runtime: predict function}` for the model exported in `form`."""
    runners = {}
    for runtime in ("onnx", "litert"):
        prepared, _ = prepare(model, runtime=runtime, block_form=form)
        path = os.path.join(directory, f"{form}-{runtime}")
        if runtime == "onnx":
            onnx.write(prepared, path + ".onnx")
            runners[runtime] = onnx.runner(path + ".onnx")()
        else:
            savedmodel.write(prepared, path)
            litert.write(path, path + ".tflite")
            runners[runtime] = litert.runner(path + ".tflite")()
    return runners


def time_case(name, runs):
    batches, size, L, M = CASES[name]
    model = blocks(size, L, M)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        runners = {form: artifacts(model, form, directory) for form in FORMS}
        for batch in batches:
            x = np.random.default_rng(1).normal(size=(batch, size, size, L * M))
            x = x.astype("float32")
            expected = np.asarray(model(x, training=False))
            for runtime in ("onnx", "litert"):
                times = {form: [] for form in FORMS}
                for form in FORMS:  # warm up, and check exactness
                    got = runners[form][runtime](x)
                    error = float(np.max(np.abs(got - expected)))
                    assert error < 1e-3 * np.max(np.abs(expected)), (name, form)
                for _ in range(runs):
                    for form in FORMS:
                        start = time.perf_counter()
                        runners[form][runtime](x)
                        times[form].append(1e3 * (time.perf_counter() - start))
                ms = {form: statistics.median(t) for form, t in times.items()}
                best = min(ms, key=ms.get)
                rows.append(
                    dict(case=name, runtime=runtime, batch=batch, L=L, M=M,
                         size=size, ms=ms, best=best)
                )  # fmt: skip
                print(
                    f"| {name} | {runtime} | {batch} | "
                    + " | ".join(f"{ms[f]:.2f}" for f in FORMS)
                    + f" | {best} |",
                    flush=True,
                )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument(
        "--output",
        default=os.path.join(
            os.path.dirname(__file__), "results", "export-forms-cpu.json"
        ),
    )
    args = parser.parse_args(argv)
    print("| case | runtime | batch | " + " | ".join(f"{f} ms" for f in FORMS)
          + " | fastest |")  # fmt: skip
    print("|---|---|---:|" + "---:|" * len(FORMS) + "---|")
    rows = [row for name in args.cases for row in time_case(name, args.runs)]
    result = {"machine": platform.machine(), "cpus": os.cpu_count(), "rows": rows}
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

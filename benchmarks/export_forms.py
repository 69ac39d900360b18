"""Which form of an IGC block and of a grouped convolution each export
runtime runs fastest, on CPU.

    python -m benchmarks.export_forms [--runs 30] [--cases "L24M2 stage1" ...]
    python -m benchmarks.export_forms --grouped-only   # the grouped cases only
    python -m benchmarks.export_forms --cases "L100M2 stage2" --update

For each case (the paper's CIFAR stages of IGC-L24M2 and IGC-L4M8 at batch 1
and 64, the four ImageNet stages of IGC-L100M2+Ident. at batch 1, 4 and 16,
and the same widths with L = 100 at batch 1 and 16), two
blocks `IGCConv2D -> BatchNorm -> ReLU` are exported with every block form
of `keras_igc.forms` (`FORMS["igc_block"]`), as ONNX (run in
ONNX Runtime) and LiteRT (run with its default XNNPACK delegate), and timed
in the same process, forms alternating, medians. The fastest form per case
and runtime is the rule `keras_igc.forms` follows (`RULES`).

The grouped cases time one grouped convolution alone (the IGC networks'
1x1 projection shortcuts, and the narrow primaries of M=2 blocks as a
`GroupConv2D`): as the dense block-diagonal kernel, as the runtime's grouped
convolution, and with consecutive groups merged into wider ones
(`forms.merge_factor`, `ops.merged_groups_kernel`; ONNX Runtime, which
merges nothing, is timed with LiteRT's merges), in ONNX Runtime, LiteRT and
TensorFlow (the SavedModel). They back the `"grouped_conv"` rules of
`keras_igc.forms` and `forms.merge_factor`.

Writes benchmarks/results/export-forms-cpu.json (the grouped cases:
export-grouped-cpu.json) and prints Markdown tables.
"""

import argparse
import os
import platform
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_igc  # noqa: E402
from benchmarks.output import results_path, updated_rows, write_json  # noqa: E402
from benchmarks.timing import taking_turns  # noqa: E402
from keras_igc import forms  # noqa: E402
from keras_igc.export import litert, onnx, prepare, savedmodel  # noqa: E402

# name: (batches, size, L, M)
CASES = {
    "L24M2 stage1": ((1, 64), 32, 24, 2),
    "L24M2 stage2": ((1, 64), 16, 24, 4),
    "L24M2 stage3": ((1, 64), 8, 24, 8),
    "L4M8 stage1": ((1, 64), 32, 4, 8),
    "L4M8 stage2": ((1, 64), 16, 4, 16),
    "L4M8 stage3": ((1, 64), 8, 4, 32),
    # IGC-L100M2+Ident.'s stages: M = 2 throughout, L = width / 2
    "L100M2 stage1": ((1, 4, 16), 56, 100, 2),
    "L100M2 stage2": ((1, 4, 16), 28, 200, 2),
    "L100M2 stage3": ((1, 4, 16), 14, 400, 2),
    "L100M2 stage4": ((1, 4, 16), 7, 800, 2),
    # the same widths with L = 100 fixed (larger M)
    "L100M4 28x28": ((1, 16), 28, 100, 4),
    "L100M8 14x14": ((1, 16), 14, 100, 8),
    "L100M16 7x7": ((1, 16), 7, 100, 16),
}
FORMS = ("grouped", "grouped_primary", "dense", "igc")

# name: (batches, size, channels, filters, kernel, strides, groups)
GROUPED_CASES = {
    "L100M2 stage1 primary": ((1, 16), 56, 200, 200, 3, 1, 100),
    "L100M2 first primary": ((1, 16), 56, 100, 200, 3, 1, 100),
    "L100M2 proj1": ((1, 16), 56, 100, 200, 1, 1, 100),
    "L100M2 proj2": ((1, 16), 56, 200, 400, 1, 2, 200),
    "L100M2 proj4": ((1, 16), 14, 800, 1600, 1, 2, 800),
    "L24M2 stage1 primary": ((1, 64), 32, 48, 48, 3, 1, 24),
    "L24M2 proj2": ((1, 64), 32, 48, 96, 1, 2, 24),
    "L4M32 proj2": ((1, 16), 56, 128, 256, 1, 2, 4),
}
GROUPED_FORMS = ("dense", "grouped", "merged")
GROUPED_RUNTIMES = ("onnx", "litert", "savedmodel")


def calibrated(model):
    """`model` (BatchNorm momentum 0) after one training call on a random
    batch: its moving statistics are that batch's."""
    shape = model.input_shape[1:]
    sample = np.random.default_rng(0).normal(size=(4, *shape)).astype("float32")
    model(sample, training=True)
    return model


def blocks(size, L, M):
    """Two IGC blocks with BatchNorm statistics of one random batch."""
    inputs = keras.Input((size, size, L * M))
    x = inputs
    for _ in range(2):
        x = keras_igc.IGCConv2D(L, M, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.0)(x)
        x = keras.layers.ReLU()(x)
    return calibrated(keras.Model(inputs, x))


def runner(prepared, runtime, path):
    """The predict function of `prepared` written in `runtime`'s format at
    `path` (plus its extension) and loaded in that runtime."""
    if runtime == "onnx":
        onnx.write(prepared, path + ".onnx")
        return onnx.runner(path + ".onnx")()
    savedmodel.write(prepared, path)
    if runtime == "savedmodel":
        return savedmodel.runner(path)()
    litert.write(path, path + ".tflite")
    return litert.runner(path + ".tflite")()


def artifacts(model, form, directory):
    """`{runtime: predict function}` for the model exported in `form`."""
    return {
        runtime: runner(
            prepare(model, runtime=runtime, block_form=form)[0],
            runtime,
            os.path.join(directory, f"{form}-{runtime}"),
        )
        for runtime in ("onnx", "litert")
    }


def median_times(forms, x, expected, runs, tolerance, case):
    """`{form: median ms}` of `forms = {form: predict}` taking turns, after a
    call each that warms up and checks the outputs against `expected`."""
    found = {form: (predict, "nhwc") for form, predict in forms.items()}
    measured = taking_turns(found, x, runs, block=1, untimed=0)
    for form, (_, output) in measured.items():
        error = float(np.max(np.abs(output - expected)))
        assert error < tolerance * np.max(np.abs(expected)), (case, form)
    return {form: ms for form, (ms, _) in measured.items()}


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
                forms = {form: runners[form][runtime] for form in FORMS}
                ms = median_times(forms, x, expected, runs, 1e-3, name)
                rows.append(
                    recorded(ms, [name, runtime, batch], case=name, runtime=runtime,
                             batch=batch, L=L, M=M, size=size)
                )  # fmt: skip
    return rows


def recorded(ms, cells, **row):
    """`row` with its times `ms` (`{form: median ms}`) and the fastest form,
    after printing it as a Markdown table row: `cells`, the times, the
    fastest."""
    best = min(ms, key=ms.get)
    times = [f"{t:.2f}" for t in ms.values()]
    print("| " + " | ".join(map(str, [*cells, *times, best])) + " |", flush=True)
    return {**row, "ms": ms, "best": best}


def grouped_conv(case):
    """One grouped convolution and a BatchNorm (statistics of one batch)."""
    _, size, channels, filters, kernel, strides, groups = GROUPED_CASES[case]
    inputs = keras.Input((size, size, channels))
    x = keras_igc.GroupConv2D(
        filters, kernel, strides=strides, groups=groups, padding="same",
        use_bias=False,
    )(inputs)  # fmt: skip
    x = keras.layers.BatchNormalization(momentum=0.0)(x)
    return calibrated(keras.Model(inputs, x))


def grouped_runners(model, runtime, directory):
    """`({form: predict}, merged groups)`: `model` exported for `runtime` in
    every grouped form. "merged" follows the runtime's own merge rule, or
    LiteRT's for a runtime that merges nothing (to show what merging would do
    there); the groups it runs as come from its report."""
    merging = runtime if runtime in forms.MERGED_GROUP_OUTPUTS else "litert"
    runners = {}
    for form in GROUPED_FORMS:
        prepared, report = prepare(
            model, runtime=merging,
            grouped_conv_form="auto" if form == "merged" else form,
        )  # fmt: skip
        path = os.path.join(directory, f"{runtime}-{form}")
        runners[form] = runner(prepared, runtime, path)
    (conv,) = report.grouped_convs
    return runners, conv["groups"]


def time_grouped_case(name, runs):
    batches, size, channels, *_, groups = GROUPED_CASES[name]
    model = grouped_conv(name)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        runners = {
            runtime: grouped_runners(model, runtime, directory)
            for runtime in GROUPED_RUNTIMES
        }
        for batch in batches:
            x = np.random.default_rng(1).normal(size=(batch, size, size, channels))
            x = x.astype("float32")
            expected = np.asarray(model(x, training=False))
            for runtime in GROUPED_RUNTIMES:
                forms, merged = runners[runtime]
                ms = median_times(forms, x, expected, runs, 1e-4, name)
                rows.append(
                    recorded(ms, [name, runtime, batch, f"{groups} -> {merged}"],
                             case=name, runtime=runtime, batch=batch, groups=groups,
                             merged_groups=merged)
                )  # fmt: skip
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
    parser.add_argument(
        "--update",
        action="store_true",
        help="replace only the re-run cases' rows in the existing results files",
    )
    parser.add_argument("--grouped-cases", nargs="*", default=list(GROUPED_CASES))
    parser.add_argument(
        "--grouped-only", action="store_true", help="time the grouped cases only"
    )
    args = parser.parse_args(argv)
    for given, known in ((args.cases, CASES), (args.grouped_cases, GROUPED_CASES)):
        unknown = [name for name in given if name not in known]
        if unknown:
            parser.error(f"unknown cases {unknown}; the cases are {list(known)}")
    machine = {"machine": platform.machine(), "cpus": os.cpu_count()}
    # An empty list times nothing and leaves its results file as it is.
    if args.cases and not args.grouped_only:
        print("| case | runtime | batch | " + " | ".join(f"{f} ms" for f in FORMS)
              + " | fastest |")  # fmt: skip
        print("|---|---|---:|" + "---:|" * len(FORMS) + "---|")
        rows = [row for name in args.cases for row in time_case(name, args.runs)]
        if args.update:
            rows = updated_rows(args.output, rows, list(CASES))
        write_json(args.output, {**machine, "rows": rows})
        print(f"wrote {args.output}")
    if not args.grouped_cases:
        return
    print(
        "\n| case | runtime | batch | groups (merged) | "
        + " | ".join(f"{f} ms" for f in GROUPED_FORMS)
        + " | fastest |\n|---|---|---:|---|"
        + "---:|" * len(GROUPED_FORMS)
        + "---|"
    )
    rows = [
        row for name in args.grouped_cases for row in time_grouped_case(name, args.runs)
    ]
    output = results_path("export-grouped-cpu.json")
    if args.update:
        rows = updated_rows(output, rows, list(GROUPED_CASES))
    write_json(output, {**machine, "rows": rows})
    print(f"wrote {output}")


if __name__ == "__main__":
    main()

"""Run each artifact in its own runtime against the Keras model."""

import os
import time

import numpy as np

from keras_igc.export import litert, onnx, savedmodel
from keras_igc.export.artifacts import FORMATS, load_source
from keras_igc.export.dependencies import check_backend

RUNTIMES = {"savedmodel": savedmodel, "litert": litert, "onnx": onnx}


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
    check_backend()
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
    runners.update({fmt: RUNTIMES[fmt].runner(path) for fmt, path in artifacts.items()})
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


def _median_ms(run, x, runs):
    run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))

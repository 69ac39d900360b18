"""Run each artifact in its own runtime against the Keras model."""

import os
import re
import time

import numpy as np

from keras_igc.export.artifacts import FORMATS, load_source
from keras_igc.export.dependencies import check_backend
from keras_igc.export.runtimes import RUNTIMES
from keras_igc.layers.msgc_conv2d import GATE_DECISION


def check(model, artifacts, batch_sizes=(1, 3), runs=20, seed=0):
    """Run each artifact in its own runtime against the Keras model.

    Args:
        model: the Keras model the artifacts came from (a source string is
            loaded with `load_source`). A quantization-aware model's float
            files are compared with the float model they hold (its rounded
            weights, float activations: `quantization.inference_model`).
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
    from keras_igc import quantization

    model = load_source(model) if isinstance(model, str) else model
    if quantization.is_quantize_aware(model):
        model = quantization.inference_model(model, round_activations=False)
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
    runners.update(
        {
            fmt: RUNTIMES[fmt].runner(path)
            for fmt, path in artifacts.items()
            if fmt in RUNTIMES  # 8-bit artifacts: `check_quantized`
        }
    )
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


# Top-1 agreement with the float model that an 8-bit artifact must reach
# on held-out examples: post-training int8 of a CNN usually moves a few
# predictions in a thousand; more means a layer lost its range.
MIN_AGREEMENT = 0.98
# An 8-bit file pays for itself when it runs in at most this share of its
# float file's time (at each of `INT8_BATCHES`) and takes at most this share
# of its size; `check_quantized` measures both and names a miss.
INT8_GOALS = {"time": 0.6, "size": 0.3}
INT8_BATCHES = (1, 32)


def check_quantized(model, artifacts, images, batch=32):
    """Each 8-bit artifact against the float Keras model on `images` (held
    out: not the calibration examples); a quantization-aware model's against
    the model itself, which computes what its int8 files should.

    Returns:
        One dict per 8-bit format: `format`, `examples`, `agreement` (the
        fraction of images whose top class is the float model's),
        `max_logit_error` (the largest output difference over the largest
        float output) and `bytes` (with `float_bytes` of the float file).
        For a model with MSGC layers also `gate_flips` (the fraction of gate
        decisions that differ from the float model's), `examples_with_flips`
        (the fraction of images with at least one) and `gate_flips_by_layer`.
        Where the float file was exported beside it, also `time_ratio`
        (`{batch: the 8-bit file's median time over the float file's}`, the
        two taking turns, at `INT8_BATCHES`), `size_ratio`, and `misses`:
        what falls short of `INT8_GOALS`, in words (empty when it pays).
    """
    images = np.asarray(images, "float32")
    expected = np.concatenate(
        [np.asarray(model(images[s : s + batch], training=False))
         for s in range(0, len(images), batch)]
    )  # fmt: skip
    gates = _float_gates(model, images, batch)
    rows = []
    for fmt, path in artifacts.items():
        if not fmt.endswith("_int8"):
            continue
        base = fmt.removesuffix("_int8")
        adapter = RUNTIMES[base]
        probes = gate_tensors(adapter.tensor_names(path), path, gates) if gates else {}
        run = adapter.runner(path, list(probes.values()))()
        outputs = [run(images[s : s + batch]) for s in range(0, len(images), batch)]
        got = np.concatenate(
            [np.asarray(o[0] if probes else o, "float32") for o in outputs]
        )
        rows.append({
            "format": fmt,
            "examples": len(images),
            "agreement": float(np.mean(got.argmax(-1) == expected.argmax(-1))),
            "max_logit_error": float(
                np.max(np.abs(got - expected)) / np.max(np.abs(expected))
            ),
            "bytes": os.path.getsize(path),
            "float_bytes": (
                os.path.getsize(artifacts[base]) if base in artifacts else None
            ),
            **(_gate_flips(gates, [o[1] for o in outputs]) if probes else {}),
            **(_int8_costs(adapter, artifacts[base], path, images)
               if base in artifacts else {}),
        })  # fmt: skip
    return rows


def _int8_costs(adapter, float_path, int8_path, images, runs=10):
    """The 8-bit file's time and size over its float file's, in one runtime."""
    runners = {
        "float": adapter.runner(float_path)(),
        "int8": adapter.runner(int8_path)(),
    }
    ratios = {}
    for batch in INT8_BATCHES:
        x = np.resize(images, (batch, *images.shape[1:])).astype("float32")
        times = {name: [] for name in runners}
        for run in runners.values():
            run(x)  # the first call of a batch size may build a plan
        for _ in range(runs):  # turns: drift on a shared machine hits both
            for name, run in runners.items():
                start = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - start)
        ratios[batch] = float(np.median(times["int8"]) / np.median(times["float"]))
    size = os.path.getsize(int8_path) / os.path.getsize(float_path)
    name = os.path.basename(int8_path)
    misses = [
        f"{name} runs in {ratio:.2f}x its float file's time at batch {batch} "
        f"(goal: at most {INT8_GOALS['time']}x)"
        for batch, ratio in ratios.items()
        if ratio > INT8_GOALS["time"]
    ]
    if size > INT8_GOALS["size"]:
        misses.append(
            f"{name} is {size:.2f}x its float file's size (goal: at most "
            f"{INT8_GOALS['size']}x)"
        )
    return {"time_ratio": ratios, "size_ratio": size, "misses": misses}


def _float_gates(model, images, batch):
    """`{MSGC layer: (examples, decisions) bool}` of the float model, or {}."""
    from keras_igc import msgc

    if not msgc.msgc_layers(model):
        return {}
    gates = msgc.inference_gates(model, images, batch_size=batch)
    return {name: g.reshape(len(images), -1) > 0.5 for name, g in gates.items()}


def gate_tensors(names, path, layers):
    """`{layer: tensor name}`: each MSGC layer's gate decisions among the
    tensor `names` of the artifact at `path`.

    The decisions are named after the layer's scope (`GATE_DECISION`): its
    name, where TensorFlow may add a suffix `_N` of its choosing. With Keras'
    default names a scope can fit two layers (`conv_1` is `conv` suffixed, or
    `conv_1` itself), so a layer takes a scope only when it is the one left
    to it: each layer with a single candidate takes it, and is struck from
    the others', until all are placed. Nothing is guessed: counting flips on
    another layer's tensor would be silently wrong.
    """
    # LiteRT names reshaped copies of the decisions after the comparison
    # too; each holds the same values, the first will do.
    scopes = {}
    for name in names:
        found = GATE_DECISION.search(name)
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


def _gate_flips(gates, probed):
    """Flip counts of an artifact's gates (`probed`: per batch, one array
    per layer in `gates`' order) against the float model's `gates`."""
    flipped = {}
    for i, (name, expected) in enumerate(gates.items()):
        got = np.concatenate([batch[i] for batch in probed])
        flipped[name] = got.reshape(expected.shape).astype(bool) != expected
    every = np.concatenate(list(flipped.values()), axis=1)
    return {
        "gate_flips": float(np.mean(every)),
        "examples_with_flips": float(np.mean(np.any(every, axis=1))),
        "gate_flips_by_layer": {k: float(np.mean(v)) for k, v in flipped.items()},
    }


def format_quantized(rows):
    """`check_quantized` rows as a Markdown table."""
    gated = any("gate_flips" in r for r in rows)
    times = " | ".join(f"time of float, batch {b}" for b in INT8_BATCHES)
    lines = [
        f"| format | examples | top-1 agreement | max logit error | size | of float "
        f"| {times} |" + (" gate flips | examples with flips |" if gated else ""),
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(INT8_BATCHES)
        + ("---:|---:|" if gated else ""),
    ]  # fmt: skip
    for r in rows:
        share = f"{r['bytes'] / r['float_bytes']:.2f}" if r["float_bytes"] else "-"
        ratios = r.get("time_ratio", {})
        timed = " | ".join(
            f"{ratios[b]:.2f}" if b in ratios else "-" for b in INT8_BATCHES
        )
        lines.append(
            f"| {r['format']} | {r['examples']} | {r['agreement']:.4f} | "
            f"{r['max_logit_error']:.3g} | {r['bytes'] / 2**10:.0f} KiB | {share} | "
            f"{timed} |"
            + (
                f" {r['gate_flips']:.2%} | {r['examples_with_flips']:.2%} |"
                if gated
                else ""
            )  # fmt: skip
        )
    return "\n".join(lines)


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

"""Benchmark IGC blocks and a depth-20 IGC network: keras_igc vs PyTorch vs dense.

    python -m benchmarks.run            # full run (about 20 minutes on 2 cores)
    python -m benchmarks.run --quick    # 3 repeats, no memory, no plain-Keras training
    KERAS_BACKEND=jax python -m benchmarks.run --quick   # e.g. on a GPU machine

For each case it times, in one process and one run, the inference forward pass
(`predict_on_batch` / `torch.no_grad`) and a training step (`train_on_batch`
with SGD and an MSE loss / the same step in PyTorch), after warm-up, and
reports medians. PyTorch runs on the GPU when there is one; Keras runs where
its backend puts it. Peak memory (CPU runs only) is measured in a fresh
process per variant: the growth of the peak resident set (Linux `VmHWM`) over
two training steps, relative to the process after building the model.
Ratios are to PyTorch's IGC block measured in the same run, since the machine
is shared and noisy, in PyTorch's faster layout for each case and measure:
NCHW or channels_last (both are timed and listed). Prints a Markdown table
and writes JSON (default benchmarks/results/bench.json).
"""

import argparse
import json
import os
import platform
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import keras_igc  # noqa: E402
from benchmarks import torch_twin  # noqa: E402
from benchmarks.output import updated_rows  # noqa: E402
from benchmarks.timing import median_seconds  # noqa: E402
from keras_igc import complexity  # noqa: E402

# name: (batch, size, input channels, L, M). The paper's CIFAR stages for
# IGC-L24M2 and IGC-L4M8 (widths G, 2G, 4G at 32/16/8 pixels, batch 64) and
# the first ImageNet stage of IGC-L100M2 (batch 8, 56x56).
BLOCKS = {
    "L24M2 stage1": (64, 32, 48, 24, 2),
    "L24M2 stage2": (64, 16, 96, 24, 4),
    "L24M2 stage3": (64, 8, 192, 24, 8),
    "L4M8 stage1": (64, 32, 32, 4, 8),
    "L4M8 stage2": (64, 16, 64, 4, 16),
    "L4M8 stage3": (64, 8, 128, 4, 32),
    "L100M2 imagenet": (8, 56, 200, 100, 2),
}
NETWORK = "IGC-L24M2 D=20 net"
PATHS = ["auto", "grouped", "depthwise", "split", "dense"]
# PyTorch runs on the GPU when there is one (Keras follows its backend's device).
TORCH_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def sync():
    if TORCH_DEVICE == "cuda":
        torch.cuda.synchronize()


PLAIN = "plain Keras Conv2D(groups)"
TORCH_IGC = "PyTorch IGC"
# PyTorch's faster CPU layout for grouped and 1x1 convolutions (oneDNN's own):
# `model.to(memory_format=torch.channels_last)`, one line for a user.
TORCH_IGC_CL = "PyTorch IGC channels_last"
TORCH_BASELINES = (TORCH_IGC, TORCH_IGC_CL)


def block_variants(case):
    batch, size, channels, L, M = BLOCKS[case]
    equal_params = max(1, round((complexity.igc_params(L, M) / 9) ** 0.5))
    variants = [f"keras_igc {p}" for p in PATHS] + [PLAIN, *TORCH_BASELINES]
    for label, width in [("equal width", L * M), ("equal params", equal_params)]:
        variants += [
            f"Keras dense conv, {label} (C={width})",
            f"PyTorch dense conv, {label} (C={width})",
        ]
    return variants


def network_variants():
    return ["keras_igc auto", *TORCH_BASELINES]


def igc_weights(layer):
    """Deterministic weights, so every variant (and process) computes the same."""
    rng = np.random.default_rng(0)
    return [rng.normal(0, 0.1, size=w.shape).astype("float32") for w in layer.weights]


def make_block(case, variant):
    """(forward, train_step, label) callables for one variant of a block case."""
    batch, size, channels, L, M = BLOCKS[case]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(batch, size, size, channels)).astype("float32")
    label = variant
    if variant.startswith("keras_igc"):
        path = variant.split()[-1]
        layer = keras_igc.IGCConv2D(
            L, M, 3, padding="same", use_bias=False, implementation=path
        )
        layer.build(x.shape)
        layer.set_weights(igc_weights(layer))
        if path == "auto":
            label = f"{variant} ({layer.active_implementation})"
        return keras_fns(layer, x, L * M) + (label,)
    if variant == PLAIN:  # the block as a user would write it in Keras
        layers = [
            keras.layers.Conv2D(L * M, 3, padding="same", groups=L, use_bias=False),
            keras_igc.ChannelShuffle(L),
            keras.layers.Conv2D(L * M, 1, groups=M, use_bias=False),
            keras_igc.ChannelShuffle(M),
        ]
        return keras_fns(layers, x, L * M) + (label,)
    if variant in TORCH_BASELINES:
        module = torch_twin.TorchIGC(channels, L, M)
        reference = keras_igc.IGCConv2D(L, M, 3, padding="same", use_bias=False)
        reference.build(x.shape)
        reference.set_weights(igc_weights(reference))
        module.load_keras(reference)
        with torch.no_grad():
            got = module(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
        expected = keras.ops.convert_to_numpy(reference(x)).transpose(0, 3, 1, 2)
        np.testing.assert_allclose(got, expected, atol=2e-3, err_msg="torch twin")
        return torch_fns(module, x, L * M, variant == TORCH_IGC_CL) + (label,)
    width = int(variant.split("C=")[1].rstrip(")"))
    if variant.startswith("Keras"):
        layer = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)
        return keras_fns(layer, x, width) + (label,)
    return torch_fns(torch_twin.dense_conv(channels, width), x, width) + (label,)


def keras_fns(layers, x, width):
    y = np.random.default_rng(2).normal(size=x.shape[:3] + (width,)).astype("float32")
    # Tensors made once, as for PyTorch: the timing is of the step, not a copy.
    x, y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    layers = layers if isinstance(layers, list) else [layers]
    model = keras.Sequential([keras.Input(x.shape[1:]), *layers])
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    return (lambda: model.predict_on_batch(x), lambda: model.train_on_batch(x, y))


def torch_fns(module, x, width, channels_last=False):
    layout = torch.channels_last if channels_last else torch.contiguous_format
    module = module.to(TORCH_DEVICE, memory_format=layout)
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(TORCH_DEVICE)
    tx = tx.contiguous(memory_format=layout)
    ty = torch.randn(tx.shape[0], width, *tx.shape[2:], device=TORCH_DEVICE)
    ty = ty.contiguous(memory_format=layout)
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3)

    def forward():
        with torch.no_grad():
            module(tx)
        sync()

    def train_step():
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(module(tx), ty).backward()
        optimizer.step()
        sync()

    return forward, train_step


def make_network(variant):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(64,))
    if variant in TORCH_BASELINES:
        layout = (
            torch.channels_last if variant == TORCH_IGC_CL else torch.contiguous_format
        )
        module = torch_twin.TorchIGCNet(6, 24, 2).to(TORCH_DEVICE, memory_format=layout)
        tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(TORCH_DEVICE)
        tx = tx.contiguous(memory_format=layout)
        ty = torch.from_numpy(y).to(TORCH_DEVICE)
        optimizer = torch.optim.SGD(
            module.parameters(), lr=0.1, momentum=0.9, nesterov=True
        )

        def forward():
            module.eval()
            with torch.no_grad():
                module(tx)
            sync()

        def train_step():
            module.train()
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(module(tx), ty).backward()
            optimizer.step()
            sync()

        return forward, train_step, variant
    x, y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    # The same network as TorchIGCNet(6, 24, 2): plain depth 20, IGC-L24M2.
    model = keras_igc.applications.IGCNet20(classifier_activation=None)
    model.compile(
        keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return (
        lambda: model.predict_on_batch(x),
        lambda: model.train_on_batch(x, y),
        variant,
    )


def make(case, variant):
    return make_network(variant) if case == NETWORK else make_block(case, variant)


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(case, variant):
    """Run in a fresh process: peak RSS growth over two training steps."""
    _, train_step, _ = make(case, variant)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    before = status_kib("VmRSS")
    for _ in range(2):
        train_step()
    print(json.dumps({"peak_mib": (status_kib("VmHWM") - before) / 1024}))


def peak_memory(case, variant):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--memory-child", case, variant],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        print(result.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def run_case(case, variants, args):
    rows = []
    for variant in variants:
        forward, train_step, label = make(case, variant)
        slow = variant == PLAIN
        row = {"case": case, "variant": label}
        row["forward_s"] = median_seconds(
            forward, 1 if slow else args.warmup, args.repeats
        )
        if not (slow and args.quick):
            row["train_s"] = median_seconds(
                train_step, 1 if slow else args.warmup, 1 if slow else args.repeats
            )
            if args.memory:
                row["peak_mib"] = peak_memory(case, variant)
        rows.append(row)
        print(f"  {case:18s} {label:40s} {fmt(row)}", flush=True)
    return rows


def fmt(row):
    parts = [f"fwd {row['forward_s'] * 1e3:8.1f} ms"]
    if "train_s" in row:
        parts.append(f"train {row['train_s'] * 1e3:8.1f} ms")
    if row.get("peak_mib") is not None:
        parts.append(f"peak +{row['peak_mib']:.0f} MiB")
    return "  ".join(parts)


def best_torch(rows):
    """Per case, PyTorch IGC's faster time of its two layouts, per measure."""
    best = {}
    for r in rows:
        if r["variant"] in TORCH_BASELINES:
            for key in ("forward_s", "train_s"):
                if key in r:
                    case = best.setdefault(r["case"], {})
                    case[key] = min(case.get(key, float("inf")), r[key])
    return best


def markdown(rows):
    """One table: times, and ratios to PyTorch's IGC in its faster layout
    (NCHW or channels_last, whichever is faster for that case and measure)."""
    base = best_torch(rows)
    lines = [
        "| case | variant | forward ms | fwd / best PyTorch | train step ms "
        "| train / best PyTorch | peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b = base.get(r["case"], {})
        ratios = [
            f"{r[k] / b[k]:.2f}" if k in r and k in b else ""
            for k in ("forward_s", "train_s")
        ]
        train = f"{r['train_s'] * 1e3:.1f}" if "train_s" in r else "not run"
        peak = "" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
        lines.append(
            f"| {r['case']} | {r['variant']} | {r['forward_s'] * 1e3:.1f} "
            f"| {ratios[0]} | {train} | {ratios[1]} | {peak} |"
        )
    return "\n".join(lines)


def environment():
    env = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "torch": torch.__version__,
        "torch_device": TORCH_DEVICE,
        "torch_threads": torch.get_num_threads(),
    }
    if TORCH_DEVICE == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        env["tensorflow"] = tf.__version__
    elif keras.backend.backend() == "jax":
        import jax

        env["jax"] = jax.__version__
        env["jax_devices"] = [str(d) for d in jax.devices()]
    return env


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Benchmark IGC blocks: keras_igc vs PyTorch vs dense convolutions."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 repeats, no memory measurement, plain Keras forward only",
    )
    parser.add_argument(
        "--cases",
        nargs="*",
        help=f"substrings of case names (default: all); cases: "
        f"{', '.join(BLOCKS)}, {NETWORK}",
    )
    parser.add_argument("--out", default="benchmarks/results/bench.json")
    parser.add_argument(
        "--update",
        action="store_true",
        help="replace only the re-run cases' rows in an existing --out file "
        "(the other rows keep their earlier measurements)",
    )
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        return memory_child(*args.memory_child)
    args.warmup, args.repeats = (2, 3) if args.quick else (3, 7)
    # Peak RSS says nothing about GPU memory; measure memory on CPU runs only.
    args.memory = not args.quick and TORCH_DEVICE == "cpu"

    env = environment()
    print("environment:", json.dumps(env))
    # One untimed step first, so the first case does not pay runtime start-up.
    forward, train_step, _ = make_block("L4M8 stage3", "keras_igc auto")
    forward(), train_step()

    cases = [(case, block_variants(case)) for case in BLOCKS]
    cases.append((NETWORK, network_variants()))
    rows = []
    for case, variants in cases:
        if not args.cases or any(c in case for c in args.cases):
            rows += run_case(case, variants, args)

    if args.update:
        rows = updated_rows(args.out, rows, [*BLOCKS, NETWORK])
    table = markdown(rows)
    print()
    print(table)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"environment": env, "rows": rows, "markdown": table}, f, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

"""Benchmark IGC blocks and a depth-20 IGC network: keras_igc vs PyTorch vs dense.

    python benchmarks/run.py            # full run (about 15 minutes on 2 cores)
    python benchmarks/run.py --quick    # fewer repeats, no plain-Keras training

For each case it times, in one process and one run, the inference forward pass
(`predict_on_batch` / `torch.no_grad`) and a training step (`train_on_batch`
with SGD and an MSE loss / the same step in PyTorch), with warm-up and repeats,
and reports medians. Peak memory is the growth of the process's peak resident
set during the training steps (Linux `VmHWM`, reset before each variant).
Ratios are keras_igc time / PyTorch time measured in the same run, since the
machine is shared and noisy. Prints a Markdown table and writes JSON.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_twin  # noqa: E402

import keras_igc  # noqa: E402
from keras_igc import complexity  # noqa: E402

# (name, batch, size, input channels, L, M): the paper's CIFAR stages for
# IGC-L24M2 and IGC-L4M8 (widths G, 2G, 4G at 32/16/8 pixels) and the first
# ImageNet stage of IGC-L100M2.
BLOCKS = [
    ("L24M2 stage1", 64, 32, 48, 24, 2),
    ("L24M2 stage2", 64, 16, 96, 24, 4),
    ("L24M2 stage3", 64, 8, 192, 24, 8),
    ("L4M8 stage1", 64, 32, 32, 4, 8),
    ("L4M8 stage2", 64, 16, 64, 4, 16),
    ("L4M8 stage3", 64, 8, 128, 4, 32),
    ("L100M2 imagenet", 8, 56, 200, 100, 2),
]
PATHS = ["auto", "depthwise", "split", "dense"]


def peak_rss_reset():
    """Reset the peak resident set size; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def timed(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(forward, train_step, warmup, repeats):
    result = {"forward_s": timed(forward, warmup, repeats)}
    if train_step is None:
        return result
    for _ in range(warmup):
        train_step()
    before = rss_kib("VmRSS")
    result["peak_mib"] = None
    if peak_rss_reset():
        train_step()
        result["peak_mib"] = (rss_kib("VmHWM") - before) / 1024
    result["train_s"] = timed(train_step, 0, repeats)
    return result


def keras_case(layer, x, y, warmup, repeats):
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    return model, measure(
        lambda: model.predict_on_batch(x),
        lambda: model.train_on_batch(x, y),
        warmup,
        repeats,
    )


def torch_case(module, x, y, warmup, repeats):
    tx, ty = torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(
        y.transpose(0, 3, 1, 2) if y.ndim == 4 else y
    )
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3)
    loss_fn = nn_loss(ty)

    def forward():
        with torch.no_grad():
            module(tx)

    def train_step():
        optimizer.zero_grad()
        loss_fn(module(tx), ty).backward()
        optimizer.step()

    return measure(forward, train_step, warmup, repeats)


def nn_loss(target):
    if target.dtype == torch.int64:
        return torch.nn.functional.cross_entropy
    return torch.nn.functional.mse_loss


def bench_block(name, batch, size, channels, L, M, args):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, channels)).astype("float32")
    y = rng.normal(size=(batch, size, size, L * M)).astype("float32")
    warmup, repeats = args.warmup, args.repeats
    rows = []

    def add(variant, result, **extra):
        rows.append({"case": name, "variant": variant, **result, **extra})
        print(f"  {name:18s} {variant:28s} {fmt(result)}", flush=True)

    reference = None
    for path in PATHS:
        layer = keras_igc.IGCConv2D(
            L, M, 3, padding="same", use_bias=False, implementation=path
        )
        layer.build(x.shape)
        if reference is None:
            reference = layer
        else:
            layer.set_weights(reference.get_weights())
        _, result = keras_case(layer, x, y, warmup, repeats)
        label = f"keras_igc {path}"
        if path == "auto":
            label += f" ({layer.active_implementation})"
        add(label, result)

    plain = keras_igc.IGCConv2D(
        L, M, 3, padding="same", use_bias=False, implementation="grouped"
    )
    plain.build(x.shape)
    plain.set_weights(reference.get_weights())
    if args.quick:
        model = keras.Sequential([keras.Input(x.shape[1:]), plain])
        add(
            "plain Keras Conv2D(groups)",
            {"forward_s": timed(lambda: model.predict_on_batch(x), 1, 1)},
        )
    else:
        _, result = keras_case(plain, x, y, 1, 1)
        add("plain Keras Conv2D(groups)", result)

    twin = torch_twin.TorchIGC(channels, L, M)
    twin.load_keras(reference)
    with torch.no_grad():
        got = twin(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    expected = keras.ops.convert_to_numpy(reference(x)).transpose(0, 3, 1, 2)
    assert np.allclose(got, expected, atol=1e-3), "PyTorch twin differs from Keras"
    add("PyTorch IGC (grouped conv)", torch_case(twin, x, y, warmup, repeats))

    equal_params = max(1, round((complexity.igc_params(L, M) / 9) ** 0.5))
    for label, width in [("equal width", L * M), ("equal params", equal_params)]:
        layer = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)
        target = rng.normal(size=(batch, size, size, width)).astype("float32")
        _, result = keras_case(layer, x, target, warmup, repeats)
        add(f"Keras dense conv, {label} (C={width})", result)
        module = torch_twin.dense_conv(channels, width)
        add(
            f"PyTorch dense conv, {label} (C={width})",
            torch_case(module, x, target, warmup, repeats),
        )
    return rows


def keras_igc_net(L, M, units, implementation):
    """Plain depth-(3*units+2) IGC network, as TorchIGCNet."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(L * M, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    for stage in range(3):
        for unit in range(units):
            stride = 2 if stage > 0 and unit == 0 else 1
            x = keras_igc.IGCConv2D(
                L,
                M * 2**stage,
                3,
                strides=stride,
                padding="same",
                use_bias=False,
                implementation=implementation,
            )(x)
            x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def bench_network(args):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(64,))
    rows = []
    for implementation in ["auto"]:
        model = keras_igc_net(24, 2, 6, implementation)
        model.compile(
            keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        result = measure(
            lambda model=model: model.predict_on_batch(x),
            lambda model=model: model.train_on_batch(x, y),
            args.warmup,
            args.repeats,
        )
        rows.append({"case": "IGC-L24M2 D=20 net", "variant": "keras_igc auto", **result})
        print(f"  IGC-L24M2 D=20 net keras_igc auto               {fmt(result)}")
    module = torch_twin.TorchIGCNet(6, 24, 2)
    torch_y = torch.from_numpy(y)
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9, nesterov=True)

    def forward():
        module.eval()
        with torch.no_grad():
            module(tx)

    def train_step():
        module.train()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(tx), torch_y).backward()
        optimizer.step()

    result = measure(forward, train_step, args.warmup, args.repeats)
    rows.append({"case": "IGC-L24M2 D=20 net", "variant": "PyTorch IGC", **result})
    print(f"  IGC-L24M2 D=20 net PyTorch IGC                  {fmt(result)}")
    return rows


def fmt(result):
    parts = [f"fwd {result['forward_s'] * 1e3:8.1f} ms"]
    if "train_s" in result:
        parts.append(f"train {result['train_s'] * 1e3:8.1f} ms")
    if result.get("peak_mib") is not None:
        parts.append(f"peak +{result['peak_mib']:.0f} MiB")
    return "  ".join(parts)


def markdown(rows):
    """One table: times, and ratios to PyTorch's IGC in the same case."""
    torch_rows = {
        r["case"]: r for r in rows if r["variant"].startswith("PyTorch IGC")
    }
    lines = [
        "| case | variant | forward ms | fwd / PyTorch | train step ms "
        "| train / PyTorch | peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = torch_rows.get(r["case"], {})

        def ratio(key, r=r, base=base):
            if key not in r or key not in base:
                return ""
            return f"{r[key] / base[key]:.2f}"

        train = f"{r['train_s'] * 1e3:.1f}" if "train_s" in r else "not run"
        peak = "" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
        lines.append(
            f"| {r['case']} | {r['variant']} | {r['forward_s'] * 1e3:.1f} "
            f"| {ratio('forward_s')} | {train} | {ratio('train_s')} | {peak} |"
        )
    return "\n".join(lines)


def environment():
    import tensorflow as tf

    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "tensorflow": tf.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 warm-up, 3 repeats")
    parser.add_argument(
        "--cases",
        nargs="*",
        help="substrings of case names to run (default: all blocks and the network)",
    )
    parser.add_argument("--out", default="benchmarks/results/bench.json")
    args = parser.parse_args(argv)
    args.warmup, args.repeats = (1, 3) if args.quick else (2, 7)

    env = environment()
    print("environment:", json.dumps(env))
    rows = []
    for case in BLOCKS:
        if not args.cases or any(c in case[0] for c in args.cases):
            rows += bench_block(*case, args)
    if not args.cases or any(c in "network" for c in args.cases):
        rows += bench_network(args)

    table = markdown(rows)
    print()
    print(table)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"environment": env, "rows": rows, "markdown": table}, f, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

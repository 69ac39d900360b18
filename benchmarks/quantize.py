"""8-bit exports against float and against PyTorch's int8: accuracy, speed, size.

    python -m benchmarks.quantize                       # digits, then both graphs
    python -m benchmarks.quantize --skip-speed --epochs 20
    python -m benchmarks.quantize --skip-accuracy --networks IGCV3-1 --runs 10
    python -m benchmarks.quantize --classes --batches 1 8 --runs 15 \
        --networks IGCV3-1 IGC-L100M2+Ident. MSGC-ResNet18

Accuracy (digits, scikit-learn's, offline): IGC-L24M2 (depth 8), IGCV3-0.25
and MSGC-ResNet18 trained with `training.train` (the CLI's recipe) for
`--epochs`, exported by `keras_igc.export.export(quantize="int8",
calibration="digits:256")`; test accuracy of the float Keras model and of
each int8 file (LiteRT, ONNX) on the 360 held-out digits, their top-1
agreement, and for MSGC how many gate decisions flip against float
(`export.check_quantized`).

Speed and size (ImageNet graphs at random weights, BatchNorm statistics of
one random batch): IGCV3-1 and IGC-L100M2+Ident., batch 1 and 32, taking turns
in one process (`benchmarks.timing.taking_turns`): each int8 file against the
float file of its runtime, and against PyTorch's two int8 peers of the
PyTorch network with the same weights (pytorchcv's igcv3_w1; the
layer-for-layer twin of IGC-L100M2): its `torch.onnx` export quantized by
ONNX Runtime the same way (QDQ, per-channel, calibrated on the same images),
and `torch.ao`'s own int8 (FX graph mode, the x86 backend, per-channel
weights, channels_last input). `/ torch int8` is against the faster of the
two. Writes benchmarks/results/quantize-cpu.json.

`--classes`: what the int8 rule for ONNX (`INT8_RULE` of `export.onnx`) was measured
with. The ONNX Runtime int8 file of each network with the rule's decision
reversed for one class of convolution at a time (dense, 2 groups, depthwise,
channel multiplier, narrow groups of several inputs, wide groups), against the
rule's own, all-int8 and float, taking turns; MSGC-ResNet18 (224x224, its
several-head layers as few wide groups) may be named besides the graphs. Writes
benchmarks/results/quantize-classes-cpu.json. Needs the `export` and `bench`
extras.
"""

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks.export import NETWORKS, calibrated, peer, torch_onnx  # noqa: E402
from benchmarks.output import results_path, write_json  # noqa: E402
from benchmarks.timing import taking_turns  # noqa: E402
from keras_igc import applications, data, export, training  # noqa: E402
from keras_igc.export import onnx as onnx_runtime  # noqa: E402
from keras_igc.export.runtimes import RUNTIMES  # noqa: E402

# int8 runner -> its float one
PAIRED = {"torch int8 onnx": "torch onnx", "torch.ao int8": "torch channels_last"}
TORCH_INT8 = ("torch int8 onnx", "torch.ao int8")
DIGITS_MODELS = {"IGC-L24M2": {"depth": 8}, "IGCV3-0.25": {}, "MSGC-ResNet18": {}}


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
        checked = {
            r["format"]: r
            for r in export.check_quantized(model, result.artifacts, images)
        }
        float_top = logits["keras"].argmax(-1)
        for fmt, values in logits.items():
            check = checked.get(fmt, {})
            flips = check.get("gate_flips")
            row = {
                "network": name, "format": fmt,
                "accuracy": float(np.mean(values.argmax(-1) == labels)),
                "agreement": float(np.mean(values.argmax(-1) == float_top)),
                "bytes": result.sizes.get(fmt), "gate_flips": flips,
                "examples_with_flips": check.get("examples_with_flips"),
                # The int8 file against its float file, as `--check` measures
                # it: median time at batch 1 and 32 taking turns, and size.
                "time_ratio": check.get("time_ratio"),
                "size_ratio": check.get("size_ratio"),
            }  # fmt: skip
            rows.append(row)
            ratios = " / ".join(f"{r:.2f}" for r in (row["time_ratio"] or {}).values())
            size = row["size_ratio"]
            print(
                f"| {name} | {fmt} | {row['accuracy']:.4f} | {row['agreement']:.4f} "
                f"| {'-' if flips is None else f'{flips:.2%}'} | {ratios or '-'} "
                f"| {'-' if size is None else f'{size:.2f}'} |",
                flush=True,
            )
    return rows


def torch_int8(model, kind, images, directory):
    """PyTorch's peer, float and int8, as `{label: (run, layout)}`, and the
    sizes of its ONNX files: its `torch.onnx` export in ONNX Runtime, float
    and quantized as ours (QDQ, per channel); eager in channels_last, float
    and `torch.ao`'s int8 (`torch_ao_int8`)."""
    import torch

    net = peer(model, kind)
    nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    paths = {"torch onnx": torch_onnx(net, model, directory)}
    paths["torch int8 onnx"] = os.path.join(directory, "torch_int8.onnx")
    onnx_runtime.quantize_file(
        paths["torch onnx"], paths["torch int8 onnx"], "int8", nchw
    )
    found = {
        label: (RUNTIMES["onnx"].runner(path)(), "nchw")
        for label, path in paths.items()
    }
    eager = {
        "torch channels_last": net.to(memory_format=torch.channels_last),
        "torch.ao int8": torch_ao_int8(net, nchw),
    }
    for label, module in eager.items():

        def run(a, module=module):
            x = torch.from_numpy(a).contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                return module(x)

        found[label] = (run, "nchw")
    return found, {label: os.path.getsize(path) for label, path in paths.items()}


def torch_ao_int8(net, nchw, batch=8):
    """`torch.ao`'s int8 of `net`: FX graph mode for the x86 backend
    (per-channel int8 weights, uint8 activations), calibrated on `nchw`."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    images = torch.from_numpy(nchw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        observed = prepare_fx(
            copy.deepcopy(net).eval(), get_default_qconfig_mapping("x86"),
            (images[:1],),
        )  # fmt: skip
        with torch.no_grad():
            for start in range(0, len(images), batch):
                observed(images[start : start + batch])
        return convert_fx(observed)


def speed_rows(names, runs, batches):
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
            found = {
                fmt: (RUNTIMES[fmt.removesuffix("_int8")].runner(path)(), "nhwc")
                for fmt, path in result.artifacts.items()
            }
            torch_runners, torch_sizes = torch_int8(model, peer_kind, images, directory)
            found.update(torch_runners)
            sizes = {**result.sizes, **torch_sizes}
            for batch in batches:
                x = np.random.default_rng(1).normal(size=(batch, *shape))
                measured = taking_turns(found, x.astype("float32"), runs)
                peer_ms = min(measured[label][0] for label in TORCH_INT8)
                for fmt, (ms, _) in measured.items():
                    base = PAIRED.get(fmt, fmt.removesuffix("_int8"))
                    row = {
                        "network": name, "batch": batch, "format": fmt, "ms": ms,
                        "bytes": sizes.get(fmt),
                        "to_float": ms / measured[base][0] if fmt != base else 1.0,
                        "to_torch_int8": ms / peer_ms,
                        "size_to_float": (
                            sizes[fmt] / sizes[base] if fmt in sizes else None
                        ),
                    }  # fmt: skip
                    rows.append(row)
                    size = f"{sizes[fmt] / 2**20:.2f}" if fmt in sizes else "-"
                    print(
                        f"| {name} | {batch} | {fmt} | {ms:.2f} | "
                        f"{row['to_float']:.2f} | {row['to_torch_int8']:.2f} | "
                        f"{size} |",
                        flush=True,
                    )
            rows.append({"network": name, "float_ops": result.quantization.float_ops})
    return rows


def convolution_class(g):
    """The class of an ONNX convolution `--classes` reverses the rule for."""
    if g.groups == 1:
        return "dense"
    if g.groups == 2:
        return "2 groups"
    if g.group_inputs >= onnx_runtime.INT8_WIDE_GROUP:
        return "wide groups"
    if g.group_inputs > 1:
        return "grouped (several inputs a group)"
    return "depthwise" if g.group_outputs == 1 else "channel multiplier"


# `--classes` also measures an MSGC host: its several-head layers run masked
# in ONNX as convolutions of a few wide groups.
CLASS_NETWORKS = {
    **{name: spec[:2] for name, spec in NETWORKS.items()},
    "MSGC-ResNet18": (applications.MSGCResNet18, (224, 224, 3)),
}


def class_rows(names, runs, batches):
    """ONNX Runtime's int8 file with the rule's decision for each class of
    convolution reversed in turn, against the rule's, all-int8 and float."""
    import onnx as onnx_lib

    rows = []
    for name in names:
        builder, shape = CLASS_NETWORKS[name]
        model = calibrated(builder, shape)
        images = np.random.default_rng(2).normal(size=(32, *shape)).astype("float32")
        with tempfile.TemporaryDirectory() as directory:
            path = export.export(model, directory, ["onnx"], verbose=False).artifacts[
                "onnx"
            ]
            graph = onnx_lib.load(path).graph
            rule = onnx_runtime.quantize_file(
                path, os.path.join(directory, "rule.onnx"), "int8", images
            )
            classes = {}
            for node, geometry in onnx_runtime.convolutions(graph):
                classes.setdefault(convolution_class(geometry), []).append(node.name)
            variants = {"float": path, "rule": os.path.join(directory, "rule.onnx")}
            # Each class with the rule's decision for it reversed.
            kept = {"all int8": {}}
            for c, nodes in classes.items():
                if set(nodes) <= set(rule):
                    kept[f"rule, {c} int8"] = {
                        k: why for k, why in rule.items() if k not in nodes
                    }
                else:
                    kept[f"rule, {c} float"] = {**rule, **dict.fromkeys(nodes, c)}
            for label, keep in kept.items():
                variants[label] = os.path.join(directory, f"{len(variants)}.onnx")
                onnx_runtime.quantize_file(
                    path, variants[label], "int8", images, kept_float=keep
                )
            found = {
                label: (RUNTIMES["onnx"].runner(file)(), "nhwc")
                for label, file in variants.items()
            }
            for batch in batches:
                x = np.random.default_rng(1).normal(size=(batch, *shape))
                measured = taking_turns(found, x.astype("float32"), runs)
                for label, (ms, _) in measured.items():
                    rows.append({
                        "network": name, "batch": batch, "variant": label, "ms": ms,
                        "to_float": ms / measured["float"][0],
                        "convolutions": {c: len(n) for c, n in classes.items()},
                    })  # fmt: skip
                    print(f"| {name} | {batch} | {label} | {ms:.2f} | "
                          f"{ms / measured['float'][0]:.2f} |", flush=True)  # fmt: skip
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
    parser.add_argument(
        "--classes", action="store_true", help="instead: ONNX Runtime's int8 "
        "file with the rule reversed for each class of convolution in turn",
    )  # fmt: skip
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    results = {"machine": platform.processor() or platform.machine()}
    if args.classes:
        print("| network | batch | variant | ms | / float |\n|---|---:|---|---:|---:|")
        results["classes"] = class_rows(args.networks, args.runs, args.batches)
        output = args.output or results_path("quantize-classes-cpu.json")
        write_json(output, results)
        print(f"wrote {output}")
        return
    if not args.skip_accuracy:
        print(
            "| network | format | test accuracy | agreement | gate flips "
            "| time of float (batch 1 / 32) | size of float |\n"
            "|---|---|---:|---:|---:|---:|---:|"
        )
        with tempfile.TemporaryDirectory() as directory:
            results["digits"] = digits_rows(args.epochs, directory)
    if not args.skip_speed:
        print(
            "| network | batch | format | ms | / float | / torch int8 | MiB |\n"
            "|---|---:|---|---:|---:|---:|---:|"
        )
        results["speed"] = speed_rows(args.networks, args.runs, args.batches)
    output = args.output or results_path("quantize-cpu.json")
    command = " ".join(["python -m benchmarks.quantize", *(argv or sys.argv[1:])])
    _keep_parts_not_run(output, results, command)
    write_json(output, results)
    print(f"wrote {output}")


def _keep_parts_not_run(output, results, command):
    """The parts (digits, speed) this run skipped keep their measurements from
    the results file it replaces; `runs` says which command measured each."""
    earlier = {}
    if os.path.exists(output):
        with open(output) as f:
            earlier = json.load(f)
    runs = dict(earlier.get("runs", {}))
    for part in ("digits", "speed"):
        if part in results:
            runs[part] = command
        elif part in earlier:
            results[part] = earlier[part]
    results["runs"] = runs


if __name__ == "__main__":
    main()

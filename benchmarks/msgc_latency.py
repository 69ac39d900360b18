"""CPU latency of the MSGC hosts' inference forms against their dense hosts.

    python -m benchmarks.msgc_latency                 # every host, batch 1, 8, 64
    python -m benchmarks.msgc_latency --hosts MSGCResNet18 --batches 1 --runs 20
    python -m benchmarks.msgc_latency --profile       # per layer, batch 1
    python -m benchmarks.msgc_latency --forms         # the rule of "auto"
    python -m benchmarks.msgc_latency --granularity 8 # gates on blocks of 8

Each host is built from its dense host (BatchNorm statistics of one random
batch, so activations stay in range) and its gates are set to the MSGC
paper's MAC ratio (`set_gates`: 0.49 ResNet-18, 0.457 ResNet-50, 0.65
MobileNetV2, as `msgc.inference_macs` counts them), with per-sample variation
as trained gates have. Then, in one process, taking turns, medians:

- the dense host in Keras (`tf.function`, inference);
- the MSGC host with `implementation="masked"`, `"gather"` and `"auto"`
  (same weights and gates; their logits are compared with the masked ones);
- the dense host's PyTorch twin (`torch_twin.KerasTwin`: torchvision's
  network, layer for layer) eager in its faster layout, NCHW or
  channels_last;
- with `--exports`, `keras-igc export` of the dense host and of the MSGC
  host (`"auto"` and `"masked"`) in ONNX Runtime and LiteRT.

Ratios are to the dense Keras host measured in the same run. `--granularity g`
builds the MSGC hosts with gates on blocks of `g` channels (results file
suffixed `-gG`); `--compare-granularity g` times those beside the free-mask
hosts, in the same turns (suffix `-vs-gG`). `--forms`
times whole networks (batch 1) in which one class of MSGC layers (one head
and 1x1, one head and spatial, several heads) takes another form and the
rest stay masked: the measurements behind `keras_igc.forms`' MSGC rules. `--profile`
times each MSGC layer alone on its real input at batch 1: the dense
convolution it replaces, its mask generator(s), and the layer in each form.
Writes benchmarks/results/msgc-latency-cpu.json (with `--exports`,
`--forms`, `--profile`: msgc-exports-, msgc-forms-, msgc-profile-cpu.json).
"""

import argparse
import dataclasses
import os
import platform
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.output import results_path, write_json  # noqa: E402
from benchmarks.timing import median_seconds, taking_turns  # noqa: E402
from keras_igc import applications, keras_internals, msgc  # noqa: E402
from keras_igc import forms as form_rules  # noqa: E402
from keras_igc.layers import MaskGenerator  # noqa: E402

# host: (its dense host, the paper's MAC ratio)
HOSTS = {
    "MSGCResNet18": (lambda: applications.ResNet18(classifier_activation=None), 0.49),
    "MSGCResNet50": (lambda: applications.ResNet50(classifier_activation=None), 0.457),
    "MSGCMobileNetV2": (
        lambda: keras.applications.MobileNetV2(
            weights=None, classifier_activation=None
        ),
        0.65,
    ),
}
FORMS = ("masked", "gather", "auto")
PROFILED = ("masked", "gather", "scaled_kernel")
SIZE = 224


def calibrate_batch_norm(model, images):
    """Moving statistics := those of `images` (random weights otherwise let
    inference activations grow without bound)."""
    norms = [
        l for l in keras_internals.all_layers(model)
        if isinstance(l, keras.layers.BatchNormalization)
    ]  # fmt: skip
    momenta = [l.momentum for l in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum


def set_gates(model, target, images, consistency=2.0, seed=0):
    """Set the mask generators' biases so that the model's mean MAC ratio on
    `images` is `target`; returns the ratio reached.

    Each gate logit `j` gets a bias that opens it on a fraction `q_j` of the
    images, `q_j = sigmoid(consistency * (z_j + t))` with fixed random
    `z_j`: some channels kept by every image, some by none, the rest varying
    per image, as trained gates do. `t` is bisected to the target. Attention
    generators get random scales in [0.5, 1.5).
    """
    rng = np.random.default_rng(seed)
    generators = [
        l for l in keras_internals.all_layers(model) if isinstance(l, MaskGenerator)
    ]
    masks = [g for g in generators if not g.attention]
    for generator in generators:
        if generator.attention:
            bias = generator.expand.bias
            generator.expand.bias.assign(
                rng.uniform(0.5, 1.5, bias.shape).astype(bias.dtype)
            )
    logits = {}
    for generator in masks:
        generator.expand.bias.assign(np.zeros(generator.expand.bias.shape, "float32"))

        def record(source, training=None, generator=generator, call=generator.call):
            out = call(source, training=training)
            logits[id(generator)] = keras.ops.convert_to_numpy(out).reshape(
                len(images), -1
            )
            return out

        generator.call = record
    try:
        model(images, training=False)
    finally:
        for generator in masks:
            del generator.call
    z = [rng.standard_normal(logits[id(g)].shape[1]) for g in masks]
    dense = msgc.mac_regularizer(model).dense_macs

    def apply(t):
        for generator, offsets in zip(masks, z, strict=True):
            opened = 1.0 / (1.0 + np.exp(-consistency * (offsets + t)))
            values = logits[id(generator)]
            bias = -np.array(
                [np.quantile(values[:, j], 1.0 - q) for j, q in enumerate(opened)]
            )
            generator.expand.bias.assign(bias.astype("float32"))
        return float(np.mean(msgc.inference_macs(model, images)) / dense)

    low, high = -6.0, 6.0
    for _ in range(16):
        middle = (low + high) / 2
        low, high = (low, middle) if apply(middle) > target else (middle, high)
    return apply((low + high) / 2)


def build(host, attention, images, granularity=1):
    """The dense host, and the MSGC host in each form, sharing weights and gates."""
    dense_builder, target = HOSTS[host]
    keras.utils.set_random_seed(0)
    dense = dense_builder()
    calibrate_batch_norm(dense, images)
    builder = getattr(applications, host)
    forms = {}
    for form in FORMS:
        forms[form] = builder(
            attention=attention, dense_weights=dense, implementation=form,
            granularity=granularity, classifier_activation=None,
        )  # fmt: skip
    ratio = set_gates(forms["masked"], target, images)
    for form in FORMS[1:]:
        forms[form].set_weights(forms["masked"].get_weights())
    return dense, forms, ratio


def torch_runners(dense):
    """The dense host's PyTorch twin, eager, in both layouts."""
    from benchmarks import torch_twin

    return torch_twin.eager_runners(torch_twin.KerasTwin(dense).eval(), "torch dense")


EXPORTED = ("onnx", "litert")


def export_runners(dense, forms, directory):
    """`keras-igc export` of the dense host and of the MSGC host in
    `"auto"` (the forms each converter gets) and `"masked"`, each in its
    runtime: `{f"{model} {format}": (run, "nhwc")}`."""
    from keras_igc import export
    from keras_igc.export.runtimes import RUNTIMES

    found = {}
    models = {
        "dense": dense,
        "MSGC auto": forms["auto"],
        "MSGC masked": forms["masked"],
    }
    for label, model in models.items():
        target = os.path.join(directory, label.replace(" ", "_"))
        result = export.export(model, target, EXPORTED, overwrite=True, verbose=False)
        for fmt, path in result.artifacts.items():
            found[f"{label} {fmt}"] = (RUNTIMES[fmt].runner(path)(), "nhwc")
    return found


def keras_runner(model):
    function = tf.function(lambda a: model(a, training=False), autograph=False)
    return lambda a: function(a).numpy()


# class of MSGC layer -> the forms `--forms` tries for it
CLASSES = {
    "one head, 1x1": ("gather", "scaled_kernel"),
    "one head, spatial": ("gather", "scaled_kernel"),
    "several heads": ("gather", "scaled_kernel"),
}


def layer_class(layer):
    if layer.heads > 1:
        return "several heads"
    return "one head, 1x1" if layer.conv.kernel_size == (1, 1) else "one head, spatial"


def with_forms(host, dense, masked, forms):
    """A copy of `masked` whose MSGC layers of each class in `forms` run
    that form (the rest masked)."""
    keras.utils.set_random_seed(0)
    layers = msgc.msgc_layers(masked)
    model = getattr(applications, host)(
        attention=any(l.attention for l in layers),
        granularity=layers[0].granularity, dense_weights=dense,
        implementation="masked", classifier_activation=None,
    )  # fmt: skip
    model.set_weights(masked.get_weights())
    for layer in msgc.msgc_layers(model):
        _set_form(layer, forms.get(layer_class(layer), "masked"))
    return model


def _set_form(layer, form, gather_limit=None):
    """Run `layer` in `form`, whatever `keras_igc.forms`' rule says (`"auto"`
    gathering up to `gather_limit` kept channels)."""
    geometry = form_rules.describe(layer)[1]
    choice = form_rules.forced(
        "msgc", form, "keras", geometry, "benchmarks/msgc_latency.py"
    )
    if gather_limit is not None:
        choice = dataclasses.replace(choice, gather_limit=gather_limit)
    layer.set_execution_form(choice)


def compare_forms(host, dense, forms, x, runs):
    """`{variant: ms / dense ms}` at the batch of `x`."""
    present = {layer_class(l) for l in msgc.msgc_layers(forms["masked"])}
    variants = {"masked everywhere": forms["masked"], "auto": forms["auto"]}
    for kind in sorted(present):
        for form in CLASSES[kind]:
            variants[f"{kind}: {form}"] = with_forms(
                host, dense, forms["masked"], {kind: form}
            )
    found = {"dense Keras": (keras_runner(dense), "nhwc")}
    found.update({name: (keras_runner(m), "nhwc") for name, m in variants.items()})
    measured = taking_turns(found, x, runs)
    base = measured["dense Keras"][0]
    return {name: ms / base for name, (ms, _) in measured.items()}


def profile(model, dense, x, runs):
    """Per MSGC layer at batch 1: `{layer: {measure: ms}}`."""
    layers = msgc.msgc_layers(model)
    probe = keras.Model(model.input, [keras_internals.call_inputs(l) for l in layers])
    inputs = probe(x, training=False)
    rows = {}
    for layer, tensors in zip(layers, inputs, strict=True):
        arguments = list(tensors) if len(tensors) > 1 else tensors[0]
        feature = tensors[0]
        conv = dense.get_layer(layer.name)
        runners = {
            "dense conv": (lambda a, c=conv: c(a), feature),
            "generators": (lambda a, l=layer: l.masks(a, training=False), arguments),
        }
        saved = layer.execution_form
        for form in PROFILED:
            _set_form(layer, form, layer.input_channels)
            function = tf.function(lambda a, l=layer: l(a, training=False)[0])
            function(arguments)  # traced now, in this form
            runners[form] = (function, arguments)
        layer.set_execution_form(saved)
        times = {}
        for name, (run, argument) in runners.items():
            run = tf.function(run) if name in ("dense conv", "generators") else run
            call = lambda run=run, argument=argument: run(argument)  # noqa: E731
            times[name] = 1e3 * median_seconds(call, warmup=1, repeats=runs)
        kept = layer.masks(arguments, training=False)
        times["kept"] = float(np.mean(keras.ops.convert_to_numpy(kept) != 0))
        times["heads"], times["channels"] = layer.heads, layer.input_channels
        times["size"] = layer.output_size
        rows[layer.name] = times
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", nargs="*", default=list(HOSTS))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 8, 64])
    parser.add_argument("--attention", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--forms", action="store_true")
    parser.add_argument(
        "--exports", action="store_true",
        help="also time the dense host's and the MSGC host's ONNX and LiteRT exports",
    )  # fmt: skip
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument(
        "--granularity", type=int, default=1,
        help="channels per gate of the MSGC hosts (1: the paper's free masks)",
    )  # fmt: skip
    parser.add_argument(
        "--compare-granularity", type=int, metavar="G",
        help="also time the MSGC hosts with gates on blocks of G channels, in "
        "the same turns (runners 'MSGC gG FORM')",
    )  # fmt: skip
    parser.add_argument(
        "--output",
        help="JSON file (default: results/msgc-MODE-cpu.json, MODE latency, "
        "exports, forms or profile)",
    )
    args = parser.parse_args(argv)
    if args.output is None:
        mode = next(
            (m for m in ("profile", "forms", "exports") if getattr(args, m)), "latency"
        )
        args.output = results_path(
            f"msgc-{mode}-cpu"
            + (f"-g{args.granularity}" if args.granularity > 1 else "")
            + (f"-vs-g{args.compare_granularity}" if args.compare_granularity else "")
            + ".json",
        )
    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, SIZE, SIZE, 3)).astype("float32")
    results = {"machine": platform.processor() or platform.machine(), "rows": []}
    scratch = tempfile.TemporaryDirectory(prefix="msgc-exports-")
    print(
        "| host | attention | batch | MAC ratio | runner | ms | / dense Keras "
        "| / fastest PyTorch | max diff / max logit |\n"
        "|---|---|---:|---:|---|---:|---:|---:|---:|"
    )
    for host in args.hosts:
        for attention in map(bool, args.attention):
            dense, forms, ratio = build(host, attention, images, args.granularity)
            if args.forms:
                ratios = compare_forms(host, dense, forms, images[:1], args.runs)
                results["rows"].append(
                    {"host": host, "attention": attention, "forms": ratios}
                )
                print(f"\n{host} attention={attention}, batch 1, / dense Keras")
                for name, value in ratios.items():
                    print(f"| {name} | {value:.3f} |", flush=True)
                continue
            if args.profile:
                rows = profile(forms["masked"], dense, images[:1], args.runs)
                results["rows"].append(
                    {"host": host, "attention": attention, "profile": rows}
                )
                _print_profile(host, attention, rows)
                continue
            found = {"dense Keras": (keras_runner(dense), "nhwc")}
            # "MSGC FORM" runners, and "MSGC gG FORM" for --compare-granularity
            families = {"MSGC": forms}
            if args.compare_granularity:
                other = f"MSGC g{args.compare_granularity}"
                families[other] = build(
                    host, attention, images, args.compare_granularity
                )[1]
            for family, models in families.items():
                found.update(
                    {
                        f"{family} {f}": (keras_runner(m), "nhwc")
                        for f, m in models.items()
                    }
                )
            if not args.no_torch:
                found.update(torch_runners(dense))
            if args.exports:
                found.update(export_runners(dense, forms, scratch.name))
            for batch in args.batches:
                x = rng.normal(size=(batch, SIZE, SIZE, 3)).astype("float32")
                ratios = msgc.inference_macs(forms["masked"], x) / (
                    msgc.mac_regularizer(forms["masked"]).dense_macs
                )
                measured = taking_turns(found, x, args.runs)
                base = measured["dense Keras"][0]
                torch_best = min(
                    (
                        ms
                        for name, (ms, _) in measured.items()
                        if name.startswith("torch")
                    ),
                    default=None,
                )
                for name, (ms, output) in measured.items():
                    diff = flips = None
                    family, form = name.rsplit(" ", 1)
                    family = family if family in families else "MSGC"
                    if name.startswith("MSGC"):
                        reference = measured[f"{family} masked"][1]
                        diff = _relative_difference(output, reference)
                    if diff is not None and diff > 1e-5 and form in forms:
                        models = families[family]
                        diff, flips = _explain(
                            models["masked"], models[form], x, output, reference
                        )
                    row = {
                        "host": host, "attention": attention, "batch": batch,
                        "mac_ratio": float(np.mean(ratios)),
                        "gate_ratio": ratio, "runner": name, "ms": ms,
                        "vs_dense": ms / base,
                        "vs_torch": ms / torch_best if torch_best else None,
                        "max_diff": diff,
                        "flipped_gates": flips,
                    }  # fmt: skip
                    results["rows"].append(row)
                    print(
                        f"| {host} | {attention} | {batch} | {row['mac_ratio']:.3f} "
                        f"| {name} | {ms:.1f} | {ms / base:.2f} | "
                        + (f"{ms / torch_best:.2f}" if torch_best else "-")
                        + " | "
                        + (f"{diff:.1e}" if diff is not None else "-")
                        + (f" ({flips} gates flipped)" if flips else "")
                        + " |",
                        flush=True,
                    )
    write_json(args.output, results)


def _explain(masked, model, x, output, reference):
    """A difference beyond rounding: `(max difference over the samples whose
    gates all agree with the masked form's, gates that differ)`.

    A gate is a threshold: where its logit lies within float rounding of 0,
    any reordering of a sum upstream (another form, another batch size) can
    flip it, and a flipped gate changes the logits by far more than rounding.
    """
    ours, theirs = msgc.head_masks(model, x), msgc.head_masks(masked, x)
    per_sample = sum(
        ((ours[name] != 0) != (theirs[name] != 0)).reshape(len(x), -1).sum(axis=1)
        for name in theirs
    )
    agree = np.asarray(per_sample) == 0
    diff = (
        _relative_difference(output[agree], reference[agree]) if agree.any() else None
    )
    return diff, int(np.sum(per_sample))


def _relative_difference(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def _print_profile(host, attention, rows):
    print(f"\n{host} attention={attention}, batch 1, ms per layer")
    print(
        "| layer | heads | C_in | size | kept | dense conv | generators "
        "| masked | gather | scaled kernel |\n"
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    )
    keys = ("dense conv", "generators", *PROFILED)
    total = dict.fromkeys(keys, 0.0)
    for name, t in rows.items():
        for key in total:
            total[key] += t.get(key, 0.0)
        times = " | ".join(f"{t[k]:.3f}" if k in t else "-" for k in keys)
        print(
            f"| {name} | {t['heads']} | {t['channels']} | {t['size']} "
            f"| {t['kept']:.2f} | {times} |"
        )
    print(
        "| total | | | | | " + " | ".join(f"{total[k]:.2f}" for k in total) + " |",
        flush=True,
    )


if __name__ == "__main__":
    main()

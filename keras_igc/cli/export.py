"""`keras-igc export`: SavedModel, LiteRT and ONNX artifacts, and their check."""

import argparse
import sys


def add(commands):
    export = commands.add_parser(
        "export",
        help="export to SavedModel, LiteRT and ONNX",
        description="Export a .keras model or a named application to SavedModel "
        "(saved_model/), LiteRT (model.tflite) and ONNX (model.onnx) that run "
        "without keras_igc. BatchNorm layers fold into the convolutions before "
        "them unless --no-fold. Writes export_report.json beside the artifacts.",
    )
    export.add_argument(
        "source", help="a .keras file, an application (IGCNet38) or a registered "
        "name (IGC-L24M2+Ident.); applications get random weights unless --weights",
    )  # fmt: skip
    export.add_argument("--output", required=True, help="folder for the artifacts")
    export.add_argument(
        "--formats", help="comma-separated export formats, of the runtimes "
        "`keras-igc info --forms` lists (default: all; onnx needs pip install "
        '"keras-igc[export]")',
    )  # fmt: skip
    export.add_argument("--weights", help="weights file for an application")
    export.add_argument("--depth", type=int, help="depth of a registered CIFAR row")
    export.add_argument(
        "--no-fold", action="store_true", help="keep BatchNorm layers as they are"
    )
    _form_args(export)
    export.add_argument(
        "--overwrite", action="store_true", help="replace existing artifacts"
    )
    export.add_argument(
        "--check", action="store_true", help="run every artifact in its runtime "
        "and compare with the Keras model (max abs diff, latency); exit 1 if a "
        "difference exceeds --tolerance. 8-bit artifacts: top-1 agreement, "
        "logit error, size and, for MSGC models, gate flips on held-out "
        "examples; exit 1 under --min-agreement",
    )  # fmt: skip
    export.add_argument(
        "--tolerance", type=_tolerance, default=1e-4,
        help="largest difference allowed from the Keras model (default 1e-4)",
    )  # fmt: skip
    _quantize_args(export)
    export.set_defaults(run=run)


# `keras_igc.export.quantize.SCHEMES`, named here so that parsing needs no
# TensorFlow (tests/test_quantize.py checks that the two agree).
QUANTIZE_SCHEMES = ("int8", "dynamic")


def _quantize_args(export):
    export.add_argument(
        "--quantize", choices=QUANTIZE_SCHEMES, help="also write 8-bit artifacts "
        "(model_int8.tflite, model_int8.onnx) from the folded model: int8 "
        "(full-integer LiteRT, ONNX QDQ; per-channel weight scales, activations "
        "calibrated on --calibration) or dynamic (int8 weights only)",
    )  # fmt: skip
    export.add_argument(
        "--calibration", metavar="DATASET[:N]", help="the dataset whose "
        "training split calibrates the activations (first N examples, default "
        "256), e.g. digits:300; --check compares on its held-out split",
    )  # fmt: skip
    export.add_argument(
        "--int8-io", action="store_true", help="with --quantize int8: the LiteRT "
        "file takes and gives int8 tensors (default float)",
    )  # fmt: skip
    export.add_argument(
        "--min-agreement", type=_fraction, default=None, help="with --check: the "
        "least top-1 agreement of an 8-bit artifact with the float model on "
        "held-out examples (default 0.98, export.MIN_AGREEMENT)",
    )  # fmt: skip


def _form_args(parser):
    """--block-form and --grouped-conv-form, from `keras_igc.forms`."""
    import importlib

    # Not `from keras_igc import forms`, which loads the package (and Keras).
    forms = importlib.import_module("keras_igc.forms")

    for kind, flag, what in (
        ("igc_block", "--block-form", "every IGC block"),
        ("grouped_conv", "--grouped-conv-form",
         "every grouped convolution outside IGC blocks (the projection shortcuts)"),
    ):  # fmt: skip
        explained = "; ".join(
            f"{form}: {forms.DESCRIPTIONS[kind][form]}"
            for form in forms.OVERRIDES[kind]
        )
        parser.add_argument(
            flag, default="auto", choices=forms.OVERRIDES[kind],
            help=f"the form of {what}: {explained} (default auto; "
            f"export_report.json says which and why; `keras-igc info --forms` "
            f"prints the rules)",
        )  # fmt: skip


def _tolerance(text):
    """argparse type: a finite number >= 0."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number >= 0; got {text!r}")
    return value


def _fraction(text):
    """argparse type: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1]; got {text!r}")
    return value


def run(args):
    from keras_igc import export, quantization

    _check_quantize_flags(args)
    builder_args = {} if args.depth is None else {"depth": args.depth}
    model = export.load_source(args.source, weights=args.weights, **builder_args)
    record = export.record_of(args.source)
    learned = quantization.is_quantize_aware(model)
    _check_calibration(args, learned, record)
    formats = args.formats.split(",") if args.formats else tuple(export.FORMATS)
    result = export.export(
        model, args.output, formats, fold=not args.no_fold,
        block_form=args.block_form, grouped_conv_form=args.grouped_conv_form,
        quantize=args.quantize, int8_io=args.int8_io, overwrite=args.overwrite,
        calibration=None if learned or args.quantize != "int8" else args.calibration,
        preprocessing=record,
    )  # fmt: skip
    if not args.check:
        return 0
    rows = export.check(model, result.artifacts)
    print(export.format_check(rows))
    worst = max(row["max_abs_diff"] for row in rows)
    if worst > args.tolerance:
        print(
            f"keras-igc export: check failed: max abs diff {worst:.2e} exceeds "
            f"--tolerance {args.tolerance:g}",
            file=sys.stderr,
        )
        return 1
    return _check_quantized(export, model, result, args, record)


def _check_quantize_flags(args):
    """The 8-bit flags make sense together, before anything is loaded."""
    if args.int8_io and args.quantize != "int8":
        raise ValueError(
            f"--int8-io needs --quantize int8 (full-integer). Received: "
            f"--quantize {args.quantize}."
        )
    if args.quantize is None and (args.calibration or args.min_agreement):
        raise ValueError(
            "--calibration and --min-agreement apply to 8-bit artifacts: add "
            "--quantize int8 (or dynamic)."
        )


def _check_calibration(args, learned, record):
    """A calibration dataset where the 8-bit files need one: to set the
    ranges of a float model, and for --check's held-out examples (a
    quantization-aware model learned its ranges, and its run's
    preprocessing.json names its dataset)."""
    if learned and args.calibration is not None:
        raise ValueError(
            f"{args.source} is quantization-aware: its int8 files take the ranges "
            f"it learned, and --check compares on its dataset's held-out split. "
            f"Leave --calibration out."
        )
    trained_on = None if record is None else record.dataset
    if learned and args.quantize and args.check and trained_on is None:
        raise ValueError(
            f"--check of a quantization-aware model compares on the held-out "
            f"split of its dataset, which the preprocessing.json beside "
            f"{args.source} names; export the model.keras of its run folder."
        )
    if (
        not learned
        and args.quantize
        and args.calibration is None
        and (args.quantize == "int8" or args.check)
    ):
        raise ValueError(
            f"--quantize {args.quantize} needs --calibration DATASET[:N] "
            f"(e.g. digits:300): "
            + (
                "its training split calibrates the activations"
                if args.quantize == "int8"
                else "--check compares on its held-out split"
            )  # fmt: skip
            + "."
        )


HELD_OUT = 1000  # examples of the held-out split an 8-bit check compares on


def _check_quantized(export, model, result, args, record):
    """--check of the 8-bit artifacts: top-1 agreement on held-out examples,
    and their time and size against the float files (`INT8_GOALS`)."""
    if not args.quantize:
        return 0
    from keras_igc import data, quick
    from keras_igc.export import quantize

    if args.calibration is None:  # a quantization-aware model's own dataset
        name = record.dataset
    else:
        name, _ = quantize.parse_calibration(args.calibration)
    images = data.first_images(name, "eval", quick.examples(HELD_OUT))
    rows = export.check_quantized(model, result.artifacts, images)
    print(export.format_quantized(rows))
    export.add_to_report(args.output, "int8_check", rows)
    for row in rows:  # slower or larger than worth it: said, not refused
        for miss in row.get("misses", []):
            print(
                f"keras-igc export: warning: {miss}; the float file may be the "
                f"better one to ship (measured here, in {export.REPORT_FILE} "
                f"under int8_check)",
                file=sys.stderr,
            )
    least = args.min_agreement or export.MIN_AGREEMENT
    failed = [r for r in rows if r["agreement"] < least]
    reference = "float" if args.calibration else "quantization-aware"
    for row in failed:
        print(
            f"keras-igc export: check failed: {row['format']} agrees with the "
            f"{reference} model on {row['agreement']:.2%} of {row['examples']} "
            f"held-out examples, under --min-agreement {least:g}",
            file=sys.stderr,
        )
    return 1 if failed else 0

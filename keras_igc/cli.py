"""The `keras-igc` command: train, evaluate and inspect IGC networks."""

import argparse
import json
import sys


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-igc",
        description="Train, evaluate and inspect interleaved group convolution "
        "networks (keras_igc).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_train, _evaluate, _export_command, _convert_command,
                _predict_command, _tune, _info):  # fmt: skip
        add(commands)
    return parser


def _train(commands):
    train = commands.add_parser(
        "train",
        help="train a network with the paper's recipe",
        description="Train a registered network through model.fit with the paper's "
        "recipe (Nesterov SGD with coupled weight decay 1e-4, lr divided by 10 "
        "after 1/2, 3/4 and 7/8 of the epochs). Running the same command again with "
        "the same --output resumes an interrupted run exactly where its last "
        "backup left it (the weights of an uninterrupted run). With "
        "TF_CONFIG set, every worker runs this same command "
        "(MultiWorkerMirroredStrategy); the chief writes --output.",
    )
    _model_args(train)
    _data_args(train)
    train.add_argument(
        "--output", default="runs/igc", help="folder for checkpoints, TensorBoard "
        "logs, history.csv, curves.png, model.keras and preprocessing.json (how "
        "an image becomes its input, for predict and export; default: runs/igc)",
    )  # fmt: skip
    train.add_argument(
        "--epochs", type=int, help="default: the paper's for the dataset"
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        help="default: 0.1 scaled by batch size / paper's",
    )
    train.add_argument("--steps-per-epoch", type=int, help="default: whole split")
    train.add_argument(
        "--seed", type=int, help="the initial weights, data order, augmentation "
        "and noise: the same seed gives the same weights (default: drawn, and "
        "recorded in the backup so that a resumed run continues it)",
    )  # fmt: skip
    train.add_argument(
        "--backup-every", type=_backup_every, help="steps between backups inside "
        "an epoch (a kill loses at most that many), or 'epoch' for epoch ends "
        "only (default: every 10 minutes; every epoch end is backed up)",
    )  # fmt: skip
    train.add_argument(
        "--mixed-precision",
        default="auto",
        choices=["auto", "float32", "float64", "mixed_float16", "mixed_bfloat16"],
        help="default auto: mixed_float16 on a GPU, float32 on CPU",
    )
    train.add_argument(
        "--dense-weights", help="MSGC hosts: start from this dense network, e.g. "
        "torchvision's resnet18-f37072fd.pth (needs PyTorch to read) or a .keras "
        "file",
    )  # fmt: skip
    train.add_argument(
        "--attention", action="store_true", help="MSGC hosts: attention generators"
    )
    train.add_argument(
        "--granularity", type=int, help="MSGC hosts: channels per gate (default "
        "1, the release's free masks; e.g. 8 for gates that open or close "
        "blocks of 8 channels)",
    )  # fmt: skip
    train.add_argument(
        "--mac-target", type=float, help="MSGC hosts: MAC ratio to reach (default: "
        "the release's: 0.49 ResNet-18, 0.457 ResNet-50, 0.65 MobileNetV2)",
    )  # fmt: skip
    train.add_argument(
        "--bn-batch", type=_bn_batch, help="examples per BatchNorm statistic: N, "
        "or 'device' for each device's whole batch (default: the release's, the "
        "batch over its GPUs: 32 on CIFAR and SVHN, 64 on ImageNet)",
    )  # fmt: skip
    train.set_defaults(run=_run_train)


def _evaluate(commands):
    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a saved model",
        description="Loss and accuracy of a saved .keras model on the evaluation "
        "split of a dataset.",
    )
    evaluate.add_argument("model_path", help="a .keras file, e.g. runs/igc/model.keras")
    _data_args(evaluate)
    evaluate.set_defaults(run=_run_evaluate)


def _export_command(commands):
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
        "--formats", default="savedmodel,litert,onnx",
        help="comma-separated subset of savedmodel,litert,onnx (default: all; "
        'onnx needs pip install "keras-igc[export]")',
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
    export.set_defaults(run=_export)


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


def _convert_command(commands):
    convert = commands.add_parser(
        "convert",
        help="turn an authors' checkpoint into a .keras model or a keras-hub preset",
        description="Build the ImageNet network that a checkpoint of the IGC "
        "authors' release (models/*/...-0095.params, MXNet; input: images "
        "normalised with keras_igc.applications.preprocess_input(x, "
        "mode='igc-release')) or of the MSGC authors' release (checkpoints/*.pth, "
        "PyTorch, needs torch to read; input: mode='torch') describes, load its "
        "weights and save it as a .keras model (--output) or as a keras-hub "
        "preset folder (--preset; needs keras-igc[hub]): a classifier with its "
        "preprocessor that keras_hub.models.ImageClassifier.from_preset(DIR) "
        "loads after `import keras_igc.hub`.",
    )
    convert.add_argument("checkpoint", help="the release's .params or .pth file")
    convert.add_argument(
        "--model", help="check that the file holds this network, e.g. "
        "IGC-L100M2+Ident., IGC-L4M32+Ident., ResNet-18 (C=64), MSGC-ResNet18",
    )  # fmt: skip
    target = convert.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", help="the .keras file to write")
    target.add_argument("--preset", help="the keras-hub preset folder to write")
    convert.add_argument(
        "--image-size", type=_ints, default=(224, 224),
        help="with --preset: HEIGHT,WIDTH the preprocessor resizes to (224,224)",
    )  # fmt: skip
    convert.add_argument(
        "--overwrite", action="store_true", help="replace an existing target"
    )
    convert.set_defaults(run=_convert)


def _predict_command(commands):
    predict = commands.add_parser(
        "predict",
        help="classify images with a model file",
        description="Classify image files with a .keras model, a release "
        ".params checkpoint, or an exported .tflite or .onnx file (float or "
        "int8). Each image is prepared as the model's training images were: "
        "the preprocessing.json that `train` writes beside its model and "
        "`export` beside its files gives the size, channels (a colour image "
        "for a grayscale model is converted, and the reverse), view and "
        "statistics, and the class names. Without one, ImageNet's centre crop "
        "and the IGC release's normalisation (--preprocess to choose another).",
    )
    predict.add_argument(
        "model", help="a .keras, .params, .tflite or .onnx file, e.g. "
        "runs/digits/model.keras or exported/model_int8.tflite",
    )  # fmt: skip
    predict.add_argument("images", nargs="+", help="JPEG, PNG, BMP or GIF files")
    predict.add_argument("--top", type=int, default=5, help="classes to show")
    predict.add_argument(
        "--preprocess", choices=NORMALIZATION_NAMES, help="a normalisation "
        "to use instead of the model's preprocessing.json (default: the "
        "record; igc-release where there is none)",
    )  # fmt: skip
    predict.add_argument(
        "--json", action="store_true", help='one JSON object per image: {"image": '
        '..., "top": [{"class": ..., "score": ...}, ...]}',
    )  # fmt: skip
    predict.set_defaults(run=_predict)


# `keras_igc.statistics.NORMALIZATIONS`, named here so that parsing needs no
# TensorFlow (tests/test_bad_inputs.py checks that the two agree).
NORMALIZATION_NAMES = ("igc-release", "torch", "cifar10", "cifar100", "svhn")


def _tune(commands):
    tune = commands.add_parser(
        "tune",
        help="sweep L and M with KerasTuner",
        description="Sweep the partitions L and M of an IGC network with KerasTuner "
        "and write report.csv, report.md, accuracy_vs_m.png and "
        "accuracy_vs_params.png into --directory. Mode width: every (L, M) with "
        "L*M = --width. Mode budget: for each M, the widest L whose network has no "
        "more convolution weights than --reference at the same depth. Running the "
        "same command again with the same --directory resumes the sweep (KerasTuner "
        "keeps finished trials and reruns an interrupted one); --overwrite starts "
        "over.",
    )
    tune.add_argument("--mode", default="budget", choices=["budget", "width"])
    tune.add_argument("--width", type=int, default=48, help="mode width: G = L*M")
    tune.add_argument(
        "--reference", default="RegConv-W16",
        help="mode budget: the network whose convolution weights are the budget",
    )  # fmt: skip
    tune.add_argument(
        "--secondary-partitions", default="1,2,3,4,6,8,12,16",
        help="mode budget: comma-separated M values to try",
    )  # fmt: skip
    tune.add_argument("--depth", type=int, default=8, help="network depth (default 8)")
    tune.add_argument("--residual", action="store_true", help="+Ident. networks")
    _data_args(tune)
    tune.add_argument(
        "--epochs", type=int, default=10, help="epochs per trial (default 10)"
    )
    tune.add_argument("--steps-per-epoch", type=int, help="default: whole split")
    tune.add_argument(
        "--learning-rates", type=_rates,
        help="comma-separated candidates (default: the recipe's)",
    )  # fmt: skip
    tune.add_argument("--tuner", default="grid", choices=["grid", "random",
                      "bayesian", "hyperband"])  # fmt: skip
    tune.add_argument("--max-trials", type=int, help="default: one per config")
    tune.add_argument("--directory", default="runs/sweep", help="sweep folder")
    tune.add_argument("--seed", type=int)
    tune.add_argument("--overwrite", action="store_true", help="start the sweep over")
    tune.set_defaults(run=_run_tune)


def _info(commands):
    info = commands.add_parser(
        "info",
        help="parameters and MACs of named networks",
        description="Print a Markdown table of stage-1 width, convolution weights, "
        "all weights and multiply-accumulates of registered networks.",
    )
    info.add_argument(
        "models", nargs="*", help="names from the registry (default: all); "
        "see --list",
    )  # fmt: skip
    info.add_argument("--depth", type=int, default=20, help="depth of CIFAR networks")
    info.add_argument("--list", action="store_true", help="list the names and exit")
    info.add_argument(
        "--forms", action="store_true", help="print the rule table that says "
        "which form each layer runs in each runtime (keras_igc.forms) and exit",
    )  # fmt: skip
    info.set_defaults(run=_run_info)


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


def _model_args(parser):
    parser.add_argument(
        "--model", default="IGC-L24M2", help="a registered network name, e.g. "
        "IGC-L24M2, IGC-L4M8+Ident., RegConv-W16 (see `keras-igc info --list`); "
        "train also takes the MSGC hosts MSGC-ResNet18, MSGC-ResNet50, "
        "MSGC-MobileNetV2",
    )  # fmt: skip
    parser.add_argument(
        "--depth", type=int, default=20, help="depth of CIFAR networks: 3k+2 plain, "
        "6k+2 residual (default 20)",
    )  # fmt: skip


# `keras_igc.data.DATASETS`, named here so that parsing needs no TensorFlow
# (tests/test_bad_inputs.py checks that the two agree).
DATASET_NAMES = ("cifar10", "cifar100", "svhn_cropped", "imagenet2012", "digits")


def _data_args(parser):
    parser.add_argument(
        "--dataset", default="cifar10", choices=DATASET_NAMES,
        help="digits works offline; the others are TFDS datasets (default cifar10)",
    )  # fmt: skip
    parser.add_argument("--data-dir", help="folder of prepared TFDS datasets")
    parser.add_argument(
        "--download", action="store_true", help="let TFDS download a missing dataset"
    )
    parser.add_argument("--batch-size", type=int, help="default: the paper's")


def main(argv=None):
    args = _parser().parse_args(argv)
    _start_keras()
    try:
        return args.run(args) or 0
    except (ValueError, OSError, ImportError) as error:
        # ReleaseWeightsError is a ValueError; OSError: a path that cannot be
        # read or written (its message names it).
        print(f"keras-igc {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Every command writes its files atomically: nothing half-written is
        # left, and `train` resumes from its last backup.
        print(f"keras-igc {args.command}: interrupted", file=sys.stderr)
        return 130


def _run_train(args):
    from keras_igc import training

    _, history = training.train(
        args.model, args.dataset, args.output, depth=args.depth,
        epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, data_dir=args.data_dir,
        download=args.download, seed=args.seed,
        steps_per_epoch=args.steps_per_epoch,
        mixed_precision=args.mixed_precision, bn_batch=args.bn_batch,
        backup_every=args.backup_every, **_msgc_train_args(args),
    )  # fmt: skip
    last = {k: round(v[-1], 4) for k, v in history.history.items()}
    print(f"finished; last epoch: {json.dumps(last)}; saved in {args.output}")


def _run_evaluate(args):
    from keras_igc import training

    result = training.evaluate(
        args.model_path, args.dataset, batch_size=args.batch_size,
        data_dir=args.data_dir, download=args.download,
    )  # fmt: skip
    print(json.dumps({
        k: v if isinstance(v, str | int) else round(float(v), 4)
        for k, v in result.items()
    }))  # fmt: skip


def _run_tune(args):
    from keras_igc import tuning

    rows = tuning.sweep(
        args.mode, args.dataset, args.directory, width=args.width,
        reference=args.reference,
        secondary_partitions=_ints(args.secondary_partitions), depth=args.depth,
        residual=args.residual, epochs=args.epochs, batch_size=args.batch_size,
        learning_rates=args.learning_rates, tuner=args.tuner,
        max_trials=args.max_trials, steps_per_epoch=args.steps_per_epoch,
        data_dir=args.data_dir, download=args.download, seed=args.seed,
        overwrite=args.overwrite,
    )  # fmt: skip
    print(tuning.format_report(rows))
    print(f"report: {args.directory}/report.md")


def _run_info(args):
    from keras_igc import applications, forms

    if args.forms:
        from keras_igc.export import quantize

        print(forms.rules_table())
        print()
        print(quantize.int8_rules_table())
    elif args.list:
        print("\n".join(applications.list_models(family="igc")))
    else:
        print(applications.summary_table(args.models or None, depth=args.depth))


def _start_keras():
    """Import Keras and TensorFlow with their start-up logs held back (shown
    only if the import fails), then the package (which registers its layers).
    `KERAS_IGC_VERBOSE=1` shows them."""
    import importlib
    import os
    import tempfile

    def load():
        # Registers the layers, optimizers and models for keras.saving.load_model.
        importlib.import_module("keras_igc.saving").register_serializables()

    if os.environ.get("KERAS_IGC_VERBOSE") or "tensorflow" in sys.modules:
        load()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import keras  # noqa: F401  (starts the backend)

            load()
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _msgc_train_args(args):
    """The MSGC options of `train`, refused for the IGC networks."""
    from keras_igc.applications import msgc_host

    given = {
        "--dense-weights": args.dense_weights,
        "--attention": args.attention or None,
        "--granularity": args.granularity,
        "--mac-target": args.mac_target,
    }
    if msgc_host(args.model) is None:
        used = [flag for flag, value in given.items() if value is not None]
        if used:
            raise ValueError(
                f"{', '.join(used)} apply to the MSGC hosts (MSGC-ResNet18, "
                f"MSGC-ResNet50, MSGC-MobileNetV2), not to {args.model!r}."
            )
        return {}
    options = {"attention": args.attention}
    if args.granularity is not None:
        options["granularity"] = args.granularity
    if args.dense_weights is not None:
        options["dense_weights"] = args.dense_weights
    return {"model_options": options, "mac_target": args.mac_target}


def _convert(args):
    import os

    if args.preset is not None:
        from keras_igc.hub import convert_to_preset
        from keras_igc.validation import image_size as check_image_size

        image_size = check_image_size(args.image_size, "--image-size")
        classifier = convert_to_preset(
            args.checkpoint, args.preset, expect=args.model, image_size=image_size,
            overwrite=args.overwrite,
        )  # fmt: skip
        print(
            f"{type(classifier).__name__} ({classifier.backbone.architecture}): "
            f"{classifier.count_params():,} weights, {classifier.num_classes} "
            f"classes -> {args.preset}"
        )
        return
    if not args.output.endswith(".keras"):
        raise ValueError(f"--output must end in .keras. Received: {args.output!r}.")
    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(
            f"{args.output!r} exists; pass --overwrite to replace it."
        )
    from keras_igc.applications.checkpoints import from_checkpoint

    checkpoint = from_checkpoint(args.checkpoint, expect=args.model)
    model = checkpoint.model
    # Written beside the target and renamed into place: no half-written file.
    partial = f"{args.output}.partial.keras"
    model.save(partial)
    os.replace(partial, args.output)
    print(
        f"{checkpoint.paper_name}: {model.count_params():,} weights, "
        f"{checkpoint.classes} classes -> {args.output}"
    )


def _predict(args):
    from keras_igc import predict

    if args.top < 1:
        raise ValueError(f"--top must be a positive integer. Received: {args.top}.")
    results = predict.classify(
        args.model, args.images, top=args.top, mode=args.preprocess
    )
    for path, top in results:
        if args.json:
            print(json.dumps({"image": path, "top": [
                {"class": label, "score": round(score, 6)} for label, score in top
            ]}))  # fmt: skip
            continue
        print(path)
        for label, probability in top:
            print(f"  {probability:7.2%}  {label}")


def _backup_every(text):
    if text == "epoch":
        return text
    try:
        steps = int(text)
    except ValueError:
        steps = 0
    if steps < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive number of steps or 'epoch', got {text!r}"
        )
    return steps


def _bn_batch(text):
    if text == "device":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of examples or 'device', got {text!r}"
        ) from None


def _rates(text):
    """argparse type: comma-separated positive finite rates."""
    import math

    try:
        rates = [float(v) for v in text.split(",")]
    except ValueError:
        rates = []
    if not rates or not all(math.isfinite(r) and r > 0 for r in rates):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive numbers, e.g. 0.05,0.1; got {text!r}"
        )
    return rates


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


def _ints(text):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(
            f"Expected comma-separated integers, e.g. 1,2,4. Received: {text!r}."
        ) from None


def _export(args):
    from keras_igc import export

    _check_quantize_flags(args)
    builder_args = {} if args.depth is None else {"depth": args.depth}
    model = export.load_source(args.source, weights=args.weights, **builder_args)
    record = export.record_of(args.source)
    result = export.export(
        model, args.output, args.formats.split(","), fold=not args.no_fold,
        block_form=args.block_form, grouped_conv_form=args.grouped_conv_form,
        quantize=args.quantize, int8_io=args.int8_io, overwrite=args.overwrite,
        calibration=args.calibration if args.quantize == "int8" else None,
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
    return _check_quantized(export, model, result, args)


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
    if (
        args.quantize
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


def _check_quantized(export, model, result, args):
    """--check of the 8-bit artifacts: top-1 agreement on held-out examples."""
    if not args.quantize:
        return 0
    from keras_igc import data, quick
    from keras_igc.export import quantize

    name, _ = quantize.parse_calibration(args.calibration)
    images = data.first_images(name, "eval", quick.examples(HELD_OUT))
    rows = export.check_quantized(model, result.artifacts, images)
    print(export.format_quantized(rows))
    least = args.min_agreement or export.MIN_AGREEMENT
    failed = [r for r in rows if r["agreement"] < least]
    for row in failed:
        print(
            f"keras-igc export: check failed: {row['format']} agrees with the "
            f"float model on {row['agreement']:.2%} of {row['examples']} held-out "
            f"examples, under --min-agreement {least:g}",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

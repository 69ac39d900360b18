"""`keras-igc train`: a registered network with the paper's recipe."""

import argparse
import json

from keras_igc.cli.arguments import DEFAULT_DATASET, data_args


def add(commands):
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
    # Not given: cifar10, or with --from the dataset of that run.
    data_args(train, None, "default cifar10; with --from, that run's")
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
        "--quantize-aware", nargs="?", const="int8", metavar="SCHEME",
        help="fine-tune the trained float model of --from under the rounding of "
        "its int8 exports (quantization-aware training; SCHEME: int8, the "
        "default), a tenth of its epochs at a hundredth of its rate, BatchNorm "
        "statistics frozen for the second half; export the result with "
        "--quantize int8",
    )  # fmt: skip
    train.add_argument(
        "--from", dest="from_run", metavar="RUN_FOLDER",
        help="with --quantize-aware: the finished float run whose model.keras "
        "to fine-tune (e.g. runs/digits)",
    )  # fmt: skip
    train.add_argument(
        "--bn-batch", type=_bn_batch, help="examples per BatchNorm statistic: N, "
        "or 'device' for each device's whole batch (default: the release's, the "
        "batch over its GPUs: 32 on CIFAR and SVHN, 64 on ImageNet)",
    )  # fmt: skip
    train.set_defaults(run=run)


def _model_args(parser):
    parser.add_argument(
        "--model", help="a registered network name, e.g. IGC-L24M2 (the "
        "default), IGC-L4M8+Ident., RegConv-W16 (see `keras-igc info --list`); "
        "train also takes the MSGC hosts MSGC-ResNet18, MSGC-ResNet50, "
        "MSGC-MobileNetV2; with --from, the network of that run",
    )  # fmt: skip
    parser.add_argument(
        "--depth", type=int, default=20, help="depth of CIFAR networks: 3k+2 plain, "
        "6k+2 residual (default 20)",
    )  # fmt: skip


DEFAULT_MODEL = "IGC-L24M2"


def run(args):
    from keras_igc import training

    if args.quantize_aware is not None or args.from_run is not None:
        # --model and --depth only check what the run folder holds.
        (model, dataset), quantize_aware, depth = _float_run_model(args), True, 20
    else:
        model, quantize_aware, depth = args.model or DEFAULT_MODEL, False, args.depth
        dataset = args.dataset or DEFAULT_DATASET
    _, history = training.train(
        model, dataset, args.output, depth=depth,
        epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, data_dir=args.data_dir,
        download=args.download, seed=args.seed,
        steps_per_epoch=args.steps_per_epoch,
        mixed_precision=args.mixed_precision, bn_batch=args.bn_batch,
        backup_every=args.backup_every, quantize_aware=quantize_aware,
        **_msgc_train_args(args),
    )  # fmt: skip
    last = {k: round(v[-1], 4) for k, v in history.history.items()}
    print(f"finished; last epoch: {json.dumps(last)}; saved in {args.output}")


def _float_run_model(args):
    """`(model, dataset)`: the float model of `--from` that
    `--quantize-aware` fine-tunes and the dataset it was trained on,
    checked against the other arguments."""
    import os

    from keras_igc import preprocessing, runs, training
    from keras_igc.saving import load_keras_model

    if args.quantize_aware not in (None, "int8"):
        raise ValueError(
            f"--quantize-aware trains under int8 rounding only (weights and "
            f"activations); received {args.quantize_aware!r}. Dynamic "
            f"quantization keeps activations float and needs no fine-tuning: "
            f"export the float run with --quantize dynamic."
        )
    if args.quantize_aware is None:
        raise ValueError(
            f"--from {args.from_run} names the float run that --quantize-aware "
            f"fine-tunes; add --quantize-aware."
        )
    if args.from_run is None:
        raise ValueError(
            "--quantize-aware fine-tunes a trained float model: name its run "
            "folder with --from (e.g. --from runs/digits)."
        )
    if os.path.abspath(args.from_run) == os.path.abspath(args.output):
        raise ValueError(
            f"--output {args.output} is the float run --from names; write the "
            f"quantization-aware run into another folder (e.g. {args.output}-qat)."
        )
    used = [
        flag
        for flag, value in [
            ("--depth without --model", None if args.model or args.depth == 20 else 1),
            ("--bn-batch", args.bn_batch),
            ("--dense-weights", args.dense_weights),
            ("--granularity", args.granularity),
            ("--mac-target", args.mac_target),
            ("--attention", args.attention or None),
        ]
        if value is not None
    ]
    if used:
        raise ValueError(
            f"{', '.join(used)} build or normalise a new network; --quantize-aware "
            f"fine-tunes the one in {args.from_run}. Leave them out."
        )
    run = runs.RunFolder(args.from_run)
    if not run.is_finished() or not os.path.isfile(run.model):
        raise ValueError(
            f"{args.from_run!r} holds no finished run (no FINISHED and "
            f"model.keras): finish the float run first (train again with "
            f"--output {args.from_run}), or name a finished run folder."
        )
    record = preprocessing.read(run.model)
    trained_on = None if record is None else record.dataset
    dataset = args.dataset or trained_on or DEFAULT_DATASET
    if trained_on is not None and trained_on != dataset:
        raise ValueError(
            f"The run in {args.from_run!r} was trained on {trained_on!r}; "
            f"fine-tuning it on --dataset {dataset} would change what it "
            f"predicts. Leave --dataset out, or pass --dataset {trained_on}."
        )
    model = load_keras_model(run.model)
    if args.model is not None:
        wanted = training.build_model(args.model, dataset, args.depth).name
        if model.name != wanted:
            raise ValueError(
                f"The run in {args.from_run!r} trained {model.name!r}, not "
                f"--model {args.model} ({wanted!r}). Leave --model out (--from "
                f"decides it) or name the run that trained {args.model}."
            )
    return model, dataset


def _msgc_train_args(args):
    """The MSGC options of `train`, refused for the IGC networks."""
    from keras_igc.applications import msgc_host

    given = {
        "--dense-weights": args.dense_weights,
        "--attention": args.attention or None,
        "--granularity": args.granularity,
        "--mac-target": args.mac_target,
    }
    if args.from_run is not None or msgc_host(args.model or DEFAULT_MODEL) is None:
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

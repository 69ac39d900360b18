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

    train = commands.add_parser(
        "train",
        help="train a network with the paper's recipe",
        description="Train a registered network through model.fit with the paper's "
        "recipe (Nesterov SGD, weight decay 1e-4, lr divided by 10 at 1/2, 3/4 and "
        "7/8 of training). Running the same command again with the same --output "
        "resumes an interrupted run at the next epoch.",
    )
    _model_args(train)
    _data_args(train)
    train.add_argument(
        "--output", default="runs/igc", help="folder for checkpoints, TensorBoard "
        "logs, history.csv, curves.png and model.keras (default: runs/igc)",
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
    train.add_argument("--seed", type=int, help="reproducible order and augmentation")
    train.add_argument(
        "--mixed-precision",
        default="auto",
        choices=["auto", "float32", "mixed_float16", "mixed_bfloat16"],
        help="default auto: mixed_float16 on a GPU, float32 on CPU",
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a saved model",
        description="Loss and accuracy of a saved .keras model on the evaluation "
        "split of a dataset.",
    )
    evaluate.add_argument("model_path", help="a .keras file, e.g. runs/igc/model.keras")
    _data_args(evaluate)

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
    return parser


def _model_args(parser):
    parser.add_argument(
        "--model", default="IGC-L24M2", help="a registered network name, e.g. "
        "IGC-L24M2, IGC-L4M8+Ident., RegConv-W16 (see `keras-igc info --list`)",
    )  # fmt: skip
    parser.add_argument(
        "--depth", type=int, default=20, help="depth of CIFAR networks: 3k+2 plain, "
        "6k+2 residual (default 20)",
    )  # fmt: skip


def _data_args(parser):
    from keras_igc.data import DATASETS

    parser.add_argument(
        "--dataset", default="cifar10", choices=list(DATASETS),
        help="digits works offline; the others are TFDS datasets (default cifar10)",
    )  # fmt: skip
    parser.add_argument("--data-dir", help="folder of prepared TFDS datasets")
    parser.add_argument(
        "--download", action="store_true", help="let TFDS download a missing dataset"
    )
    parser.add_argument("--batch-size", type=int, help="default: the paper's")


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            from keras_igc import training

            _, history = training.train(
                args.model,
                args.dataset,
                args.output,
                depth=args.depth,
                epochs=args.epochs,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                data_dir=args.data_dir,
                download=args.download,
                seed=args.seed,
                steps_per_epoch=args.steps_per_epoch,
                mixed_precision=args.mixed_precision,
            )
            last = {k: round(v[-1], 4) for k, v in history.history.items()}
            print(f"finished; last epoch: {json.dumps(last)}; saved in {args.output}")
        elif args.command == "evaluate":
            from keras_igc import training

            result = training.evaluate(
                args.model_path,
                args.dataset,
                batch_size=args.batch_size,
                data_dir=args.data_dir,
                download=args.download,
            )
            print(json.dumps({k: round(float(v), 4) for k, v in result.items()}))
        else:
            from keras_igc import applications

            if args.list:
                print("\n".join(applications.list_models()))
            else:
                print(applications.summary_table(args.models or None, depth=args.depth))
    except ValueError as error:
        print(f"keras-igc {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

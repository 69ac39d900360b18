"""`keras-igc tune`: a KerasTuner sweep over L and M."""

import argparse

from keras_igc.cli.arguments import data_args, ints


def add(commands):
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
    data_args(tune)
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
    tune.set_defaults(run=run)


def run(args):
    from keras_igc import tuning

    rows = tuning.sweep(
        args.mode, args.dataset, args.directory, width=args.width,
        reference=args.reference,
        secondary_partitions=ints(args.secondary_partitions), depth=args.depth,
        residual=args.residual, epochs=args.epochs, batch_size=args.batch_size,
        learning_rates=args.learning_rates, tuner=args.tuner,
        max_trials=args.max_trials, steps_per_epoch=args.steps_per_epoch,
        data_dir=args.data_dir, download=args.download, seed=args.seed,
        overwrite=args.overwrite,
    )  # fmt: skip
    print(tuning.format_report(rows))
    print(f"report: {args.directory}/report.md")


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

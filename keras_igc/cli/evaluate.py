"""`keras-igc evaluate`: loss and accuracy of a saved model."""

import json

from keras_igc.cli.arguments import data_args


def add(commands):
    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a saved model",
        description="Loss and accuracy of a saved .keras model on the evaluation "
        "split of a dataset.",
    )
    evaluate.add_argument("model_path", help="a .keras file, e.g. runs/igc/model.keras")
    data_args(evaluate)
    evaluate.set_defaults(run=run)


def run(args):
    from keras_igc import training

    result = training.evaluate(
        args.model_path, args.dataset, batch_size=args.batch_size,
        data_dir=args.data_dir, download=args.download,
    )  # fmt: skip
    print(json.dumps({
        k: v if isinstance(v, str | int) else round(float(v), 4)
        for k, v in result.items()
    }))  # fmt: skip

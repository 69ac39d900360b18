"""Arguments several commands share."""

# `keras_igc.data.DATASETS`, named here so that parsing needs no TensorFlow
# (tests/test_bad_inputs.py checks that the two agree).
DATASET_NAMES = ("cifar10", "cifar100", "svhn_cropped", "imagenet2012", "digits")


DEFAULT_DATASET = "cifar10"


def data_args(parser, dataset_default=DEFAULT_DATASET, dataset_help="default cifar10"):
    parser.add_argument(
        "--dataset", default=dataset_default, choices=DATASET_NAMES,
        help=f"digits works offline; the others are TFDS datasets ({dataset_help})",
    )  # fmt: skip
    parser.add_argument("--data-dir", help="folder of prepared TFDS datasets")
    parser.add_argument(
        "--download", action="store_true", help="let TFDS download a missing dataset"
    )
    parser.add_argument("--batch-size", type=int, help="default: the paper's")


def ints(text):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(
            f"Expected comma-separated integers, e.g. 1,2,4. Received: {text!r}."
        ) from None

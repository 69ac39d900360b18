"""`keras-igc predict`: classify image files with a model file."""

import json


def add(commands):
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
    predict.set_defaults(run=run)


# `keras_igc.statistics.NORMALIZATIONS`, named here so that parsing needs no
# TensorFlow (tests/test_bad_inputs.py checks that the two agree).
NORMALIZATION_NAMES = ("igc-release", "torch", "cifar10", "cifar100", "svhn")


def run(args):
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

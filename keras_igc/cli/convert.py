"""`keras-igc convert`: an authors' checkpoint to a `.keras` model."""

from keras_igc.cli.arguments import ints


def add(commands):
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
        "--image-size", type=ints, default=(224, 224),
        help="with --preset: HEIGHT,WIDTH the preprocessor resizes to (224,224)",
    )  # fmt: skip
    convert.add_argument(
        "--overwrite", action="store_true", help="replace an existing target"
    )
    convert.set_defaults(run=run)


def run(args):
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
    from keras_igc.applications.weights.checkpoints import from_checkpoint

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

"""What a run will do, decided before anything starts: `plan` checks the
network against the dataset and picks its recipe (`Plan`)."""

import dataclasses

import keras

from keras_igc import applications, data
from keras_igc.training.recipes import Recipe, msgc_recipes, paper_recipe, qat_recipe


def check_model_for_dataset(model, dataset):
    """A ValueError unless the registered network fits the dataset's input
    family (`"cifar"` or `"imagenet"`; a mobile network fits both)."""
    spec = data.spec(dataset)
    family = applications.dataset_of(model)
    if family != spec.family and not applications.lookup(model).any_size:
        raise ValueError(
            f"{model!r} is a {family} network and {dataset!r} a {spec.family} "
            f"dataset. Pick a model from "
            f"keras_igc.applications.list_models({spec.family!r})."
        )


def check_network_for_dataset(network, dataset):
    """A `keras.Model` of yours fits `dataset`: its image size, channels and
    classes, or a ValueError that names the values."""
    spec = data.spec(dataset)
    if not isinstance(network, keras.Model) or not network.inputs:
        raise ValueError(
            f"`model` must be a registered name or a built keras.Model (start it "
            f"with keras.Input). Received: {network!r}."
        )
    wanted = (spec.image_size, spec.image_size, spec.channels)
    given = tuple(network.input_shape[1:])
    if len(given) != 3 or any(
        g not in (None, w) for g, w in zip(given, wanted, strict=True)
    ):
        raise ValueError(
            f"Model {network.name!r} takes inputs of shape {given}; {dataset!r} "
            f"gives images of shape {wanted}. Build it with "
            f"keras.Input({wanted}) (or None for the height and width)."
        )
    classes = network.output_shape[-1]
    if classes != spec.classes:
        raise ValueError(
            f"Model {network.name!r} has {classes} outputs; {dataset!r} has "
            f"{spec.classes} classes. Give it a classifier of {spec.classes} "
            f"units (a softmax, for the sparse categorical cross-entropy)."
        )


def build_model(model, dataset, depth=20, **kwargs):
    """A registered network (`applications.list_models()`) sized for `dataset`."""
    spec = data.spec(dataset)
    check_model_for_dataset(model, dataset)
    if applications.lookup(model).takes("depth"):
        kwargs["depth"] = depth
    return applications.get_model(
        model,
        input_shape=(spec.image_size, spec.image_size, spec.channels),
        classes=spec.classes,
        **kwargs,
    )


@dataclasses.dataclass
class Plan:
    """What a run trains and how, as data (`plan`): the network, the recipe
    it follows and how its data is prepared.

    Attributes:
        name: the registered name, or the given model's name.
        dataset: a name of `keras_igc.data.DATASETS`.
        recipe: the `Recipe` (for an MSGC host, its epochs, batch and
            backbone rate; `msgc` has the rest).
        msgc: the MSGC release's `msgc.ReleaseRecipe`, or None for the IGC
            paper's recipe.
        given: a `keras.Model` of yours, or None to build `name`.
        depth, model_options: the builder's arguments.
        bn_batch: examples per BatchNorm statistic (see `train`).
        quantize_aware: fine-tune `given` (a trained float model) under int8
            rounding (`keras_igc.quantization`), with `qat_recipe`.
    """

    name: str
    dataset: str
    recipe: Recipe
    msgc: object = None
    given: object = None
    depth: int = 20
    model_options: dict = dataclasses.field(default_factory=dict)
    bn_batch: object = None
    quantize_aware: bool = False

    @property
    def data_recipe(self):
        """How `data.load` prepares the images: the IGC or the MSGC release's way."""
        return "igc" if self.msgc is None else "msgc"

    @property
    def host(self):
        return None if self.msgc is None else applications.msgc_host(self.name)


def plan(
    model, dataset, *, depth=20, epochs=None, batch_size=None, learning_rate=None,
    model_options=None, mac_target=None, bn_batch=None, quantize_aware=False,
):  # fmt: skip
    """The `Plan` of `train`'s arguments: the IGC paper's recipe for `dataset`,
    the MSGC release's for an MSGC host, or the QAT fine-tune of a float
    model; bad arguments refused here."""
    given = model if isinstance(model, keras.Model) else None
    if quantize_aware:
        return _qat_plan(
            model, dataset, epochs, batch_size, learning_rate,
            model_options or depth != 20 or mac_target is not None, bn_batch,
        )  # fmt: skip
    if given is not None:
        check_network_for_dataset(given, dataset)
        if model_options or depth != 20:
            raise ValueError(
                "`model_options` and `depth` are builder arguments; a keras.Model "
                "is already built. Leave them out."
            )
        model = given.name
    host = None if given is not None else applications.msgc_host(model)
    options = dict(model_options or {})
    if host is not None:
        recipe, release = msgc_recipes(
            host, options, epochs, batch_size, learning_rate, mac_target
        )
        return Plan(model, dataset, recipe, release, model_options=options)
    if given is None:
        check_model_for_dataset(model, dataset)
    if mac_target is not None:
        raise ValueError(
            f"mac_target applies to the MSGC hosts {list(applications.HOSTS)}; "
            f"{model!r} is not one."
        )
    recipe = paper_recipe(dataset, epochs, batch_size, learning_rate)
    return Plan(model, dataset, recipe, None, given, depth, options, bn_batch)


def _qat_plan(model, dataset, epochs, batch_size, learning_rate, builder_args,
              bn_batch):  # fmt: skip
    """The `Plan` that fine-tunes a trained float model under int8 rounding."""
    from keras_igc.quantization import check_quantizable

    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Quantization-aware training fine-tunes a trained float model: pass "
            f"it as model= (keras_igc.saving.load_keras_model('runs/x/model.keras'))"
            f", or train --quantize-aware --from RUN_FOLDER. Received: "
            f"model={model!r}."
        )
    check_network_for_dataset(model, dataset)
    if builder_args:
        raise ValueError(
            "`model_options`, `depth` and `mac_target` build a new network; "
            "quantization-aware training fine-tunes a trained one. Leave them out."
        )
    if bn_batch is not None:
        raise ValueError(
            f"Quantization-aware training normalises each whole batch (its "
            f"BatchNorms fold into the convolutions); leave bn_batch out. "
            f"Received: bn_batch={bn_batch!r}."
        )
    check_quantizable(model)
    recipe = qat_recipe(dataset, epochs, batch_size, learning_rate)
    return Plan(model.name, dataset, recipe, given=model, quantize_aware=True)

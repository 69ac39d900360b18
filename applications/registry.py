"""Every network of `keras_igc.applications` by name: one registry, one lookup.

A builder joins with the `register` decorator, under its own name
(`"IGCNet38"`, `"MSGCResNet18"`) and under the names of the paper rows it
builds (`"IGC-L24M2+Ident."`, `"MSGC-ResNet18"`), each with the arguments
that row fixes. `get_model(name, **kwargs)` builds any of them; names are
case-insensitive.
"""

import dataclasses
import difflib
import inspect

DATASETS = ("cifar", "imagenet")
FAMILIES = ("igc", "msgc")
# Paper rows of a network of any depth are built at this depth unless told.
DEFAULT_DEPTH = 20

_REGISTRY = {}


@dataclasses.dataclass(frozen=True)
class RegisteredModel:
    """A name `get_model` builds.

    Attributes:
        name: the registered name.
        builder: the function that builds it.
        dataset: the input family, `"cifar"` (32x32) or `"imagenet"` (224x224).
        family: `"igc"` (the IGC paper's networks and baselines) or `"msgc"`
            (the MSGC paper's hosts).
        preset: the builder arguments the name fixes.
        paper_row: whether the name is a row of a paper's tables.
        any_size: whether it also trains on the other input family (a
            mobile network such as IGCV3 runs on 32x32 images too).
        msgc_host: whether it is an MSGC host (learned groups and gates;
            trained with the MSGC release's recipe).
    """

    name: str
    builder: object
    dataset: str
    family: str
    preset: dict
    paper_row: bool
    any_size: bool = False
    msgc_host: bool = False

    def takes(self, argument):
        return argument in inspect.signature(self.builder).parameters


def register(dataset, family="igc", rows=None, any_size=False, msgc_host=False):
    """Decorator: register a builder under its name and the paper rows it builds.

    Args:
        dataset: `"cifar"` or `"imagenet"`.
        family: `"igc"` or `"msgc"`.
        rows: `{paper name: {argument: value}}`, the rows the builder builds
            with those arguments fixed.
        any_size: the network fits the other input family too (no fixed
            depth or stem that needs `dataset`'s size).
        msgc_host: the builder builds an MSGC host (`msgc_host`).
    """
    if dataset not in DATASETS or family not in FAMILIES:
        raise ValueError(f"register: dataset={dataset!r}, family={family!r}.")

    def decorate(builder):
        entries = [(builder.__name__, {}, False)]
        entries += [(row, dict(preset), True) for row, preset in (rows or {}).items()]
        for name, preset, paper_row in entries:
            known = _REGISTRY.get(name.lower())
            if known is not None:
                if _same_source(known.builder, builder):
                    continue  # the file imported again (pytest's doctests do)
                raise ValueError(f"{name!r} is registered twice.")
            _REGISTRY[name.lower()] = RegisteredModel(
                name,
                builder,
                dataset,
                family,
                preset,
                paper_row,
                any_size,
                msgc_host,
            )
        return builder

    return decorate


def _same_source(first, second):
    return (first.__qualname__, first.__code__.co_filename) == (
        second.__qualname__,
        second.__code__.co_filename,
    )


def list_models(dataset=None, family=None, builders=False):
    """Names `get_model` builds.

    Args:
        dataset: `None`, `"cifar"` (CIFAR/SVHN-sized inputs) or `"imagenet"`.
        family: `None`, `"igc"` or `"msgc"`.
        builders: also list the builder names (`"IGCNet38"`, ...), not only
            the papers' rows.
    """
    if dataset not in (None, *DATASETS):
        raise ValueError(
            f"`dataset` must be None, 'cifar' or 'imagenet'. Received: {dataset!r}."
        )
    if family not in (None, *FAMILIES):
        raise ValueError(
            f"`family` must be None, 'igc' or 'msgc'. Received: {family!r}."
        )
    return [
        entry.name
        for entry in _REGISTRY.values()
        if dataset in (None, entry.dataset)
        and family in (None, entry.family)
        and (builders or entry.paper_row)
    ]


def lookup(name):
    """The `RegisteredModel` of a name, or a ValueError that suggests names."""
    entry = _REGISTRY.get(str(name).lower())
    if entry is None:
        known = [e.name for e in _REGISTRY.values()]
        close = difflib.get_close_matches(str(name), known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} Known names: {', '.join(known)} "
            f"(see keras_igc.applications.list_models(builders=True))."
        )
    return entry


def get_model(name, **kwargs):
    """Build a registered network by name.

    Args:
        name: a paper row ("IGC-L24M2", "IGC-L24M2+Ident.", "RegConv-W16",
            "IGC-L100M2+Ident.", "MSGC-ResNet18") or a builder ("IGCNet38",
            "ResNet18", "MSGCResNet50"); case-insensitive.
        **kwargs: builder arguments: `depth` for the CIFAR rows (default 20),
            the keras.applications arguments such as `classes` or
            `input_shape`, and the builder's own.
    """
    entry = lookup(name)
    fixed = {k: v for k, v in entry.preset.items() if k in kwargs and kwargs[k] != v}
    if fixed:
        key = next(iter(fixed))
        raise ValueError(
            f"{entry.name} fixes {key}={fixed[key]!r}; received "
            f"{key}={kwargs[key]!r}. Pick the registered name with the value you "
            f"want (see list_models()), or call the builder itself."
        )
    if "depth" in kwargs and not entry.takes("depth"):
        raise ValueError(
            f"{entry.name} is a fixed network and takes no `depth`. Received: "
            f"depth={kwargs['depth']!r}."
        )
    if entry.takes("depth"):
        kwargs.setdefault("depth", DEFAULT_DEPTH)
    return entry.builder(**entry.preset, **kwargs)


def msgc_host(name):
    """The builder name of an MSGC host (`"MSGCResNet18"` for `"MSGC-ResNet18"`
    or `"msgcresnet18"`), or None for any other name."""
    entry = _REGISTRY.get(str(name).lower())
    return entry.builder.__name__ if entry and entry.msgc_host else None


def dataset_of(name):
    """`"cifar"` or `"imagenet"`: the input family of a registered network."""
    return lookup(name).dataset


def _first_unit(model):
    """The last layer of the first unit of stage 1 (`stage1_1_...` in the IGC
    networks, `stage1_unit1_...` in IGCV3): its output is the stage's width."""
    for prefix in ("stage1_1_", "stage1_unit1_"):
        layers = [layer for layer in model.layers if layer.name.startswith(prefix)]
        if layers:
            return layers[-1]
    raise ValueError(f"{model.name!r} has no stage1 unit to read a width from.")


def summary_table(names=None, depth=DEFAULT_DEPTH, classes=None):
    """A Markdown table of width, parameters and MACs per IGC network.

    Args:
        names: registered names (default: the IGC paper's rows).
        depth: depth of the CIFAR rows.
        classes: classifier size (default 10 for CIFAR rows, 1000 for ImageNet).

    Returns:
        The table as a string; MACs are for one image at the default input size
        (32x32 or 224x224).
    """
    import keras

    from keras_igc.complexity import model_complexity

    lines = [
        "| model | input | stage-1 width | conv params (M) | total params (M) "
        "| MACs (M) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in names or list_models(family="igc"):
        entry = lookup(name)
        if entry.family != "igc":
            raise ValueError(
                f"{entry.name} is of the MSGC family; the table covers the IGC "
                f"networks, list_models(family='igc'). For an MSGC network's MACs "
                f"use keras_igc.msgc.inference_macs."
            )
        kwargs = {"classes": classes or (10 if entry.dataset == "cifar" else 1000)}
        if entry.takes("depth"):
            kwargs["depth"] = depth
        model = get_model(name, **kwargs)
        counts = model_complexity(model)
        width = _first_unit(model)
        label = f"{entry.name} D={depth}" if entry.takes("depth") else entry.name
        lines.append(
            f"| {label} | {model.input_shape[1]}x{model.input_shape[2]} "
            f"| {width.output.shape[-1]} | {counts['conv_params'] / 1e6:.3f} "
            f"| {counts['total_params'] / 1e6:.3f} | {counts['macs'] / 1e6:.1f} |"
        )
        del model
        keras.backend.clear_session()
    return "\n".join(lines)

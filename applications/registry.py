"""The paper's rows by name: `list_models()`, `get_model(name, **kwargs)`.

CIFAR/SVHN rows take `depth` (default 20) and build the plain net, or the
residual net for names ending in "+Ident.". ImageNet rows are fixed networks.
"""

import difflib
import functools

from keras_igc.applications import cifar, imagenet
from keras_igc.complexity import model_complexity

_REGISTRY = {}


def register(name, builder, dataset, **preset):
    _REGISTRY[name] = (functools.partial(builder, **preset), dataset)


for _residual in (False, True):
    _suffix = "+Ident." if _residual else ""
    for _L, _M in [(24, 2), (4, 8), (32, 26), (16, 32)]:
        register(
            f"IGC-L{_L}M{_M}{_suffix}",
            cifar.igc_cifar_network,
            "cifar",
            residual=_residual,
            primary_partitions=_L,
            secondary_partitions=_M,
        )
    for _width in (16, 18):
        register(
            f"RegConv-W{_width}{_suffix}",
            cifar.regconv_cifar_network,
            "cifar",
            residual=_residual,
            width=_width,
        )
    register(
        f"SumFusion-L8W32{_suffix}",
        cifar.sum_fusion_cifar_network,
        "cifar",
        residual=_residual,
        primary_partitions=8,
        width=32,
    )
register("IGC-L4M32+Ident.", imagenet.IGCNetL4M32, "imagenet")
register("IGC-L16M16+Ident.", imagenet.IGCNetL16M16, "imagenet")
register("IGC-L100M2+Ident.", imagenet.IGCNetL100M2, "imagenet")
register("ResNet-18-C64", imagenet.ResNet18, "imagenet", width=64)
register("ResNet-18-C69", imagenet.ResNet18, "imagenet", width=69)


def list_models(dataset=None):
    """Names of the registered networks, optionally of one dataset family
    (`"cifar"` for CIFAR/SVHN-sized inputs, `"imagenet"`)."""
    if dataset not in (None, "cifar", "imagenet"):
        raise ValueError(
            f"`dataset` must be None, 'cifar' or 'imagenet'. Received: {dataset!r}."
        )
    return [n for n, (_, d) in _REGISTRY.items() if dataset in (None, d)]


def get_model(name, **kwargs):
    """Build a registered network by name.

    Args:
        name: a name from `list_models()`, e.g. "IGC-L24M2", "IGC-L24M2+Ident.",
            "RegConv-W16" or "IGC-L100M2+Ident." (case-insensitive).
        **kwargs: builder arguments (`depth` for CIFAR rows, default 20; the
            keras.applications arguments such as `classes` or `input_shape`).
    """
    builder, dataset = _lookup(name)
    fixed = {
        k: v for k, v in getattr(builder, "keywords", {}).items()
        if k in kwargs and kwargs[k] != v
    }  # fmt: skip
    if fixed:
        key = next(iter(fixed))
        raise ValueError(
            f"{name} fixes {key}={fixed[key]!r}; received {key}={kwargs[key]!r}. "
            f"Pick the registered name with the value you want (see "
            f"list_models()), or call the builder itself."
        )
    if dataset == "cifar":
        kwargs.setdefault("depth", 20)
    elif "depth" in kwargs:
        raise ValueError(
            f"{name} is a fixed ImageNet network and takes no `depth`. Received: "
            f"depth={kwargs['depth']!r}."
        )
    return builder(**kwargs)


def dataset_of(name):
    """`"cifar"` or `"imagenet"`: the input family of a registered network."""
    return _lookup(name)[1]


def _lookup(name):
    by_lower = {n.lower(): n for n in _REGISTRY}
    key = by_lower.get(str(name).lower())
    if key is None:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} Known names: "
            f"{', '.join(_REGISTRY)} (see keras_igc.applications.list_models())."
        )
    return _REGISTRY[key]


def summary_table(names=None, depth=20, classes=None):
    """A Markdown table of width, parameters and MACs per network.

    Args:
        names: registered names (default: all).
        depth: depth of the CIFAR rows.
        classes: classifier size (default 10 for CIFAR rows, 1000 for ImageNet).

    Returns:
        The table as a string; MACs are for one image at the default input size
        (32x32 or 224x224).
    """
    import keras

    lines = [
        "| model | input | stage-1 width | conv params (M) | total params (M) "
        "| MACs (M) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in names or list_models():
        dataset = dataset_of(name)
        kwargs = {"classes": classes or (10 if dataset == "cifar" else 1000)}
        if dataset == "cifar":
            kwargs["depth"] = depth
        model = get_model(name, **kwargs)
        counts = model_complexity(model)
        names_in_model = {layer.name for layer in model.layers}
        # The first unit's output: "_out" after a residual block, "_relu" after
        # a plain unit.
        first = "stage1_1_out" if "stage1_1_out" in names_in_model else "stage1_1_relu"
        width = model.get_layer(first)
        label = f"{name} D={depth}" if dataset == "cifar" else name
        lines.append(
            f"| {label} | {model.input_shape[1]}x{model.input_shape[2]} "
            f"| {width.output.shape[-1]} | {counts['conv_params'] / 1e6:.3f} "
            f"| {counts['total_params'] / 1e6:.3f} | {counts['macs'] / 1e6:.1f} |"
        )
        del model
        keras.backend.clear_session()
    return "\n".join(lines)

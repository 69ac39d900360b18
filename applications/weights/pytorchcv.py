"""IGCV3's weights: pytorchcv's state_dicts, the authors' MXNet checkpoint,
and `weights="imagenet"` (pytorchcv's published files).

Every Keras weight has one name in each source (`names`), Keras layer:
pytorchcv module (`igcv3_w1`, ...): the authors' MXNet node:

- `init_block_conv`: `features.init_block.conv`: `first-3x3-conv-conv2d`;
- `stage{i}_unit{j}_conv1`: `features.stage{i}.unit{j}.conv1.conv`:
  `seq-{r}-block{b}-exp-conv2d`;
- `..._conv2` (depthwise): `...conv2.conv`: `seq-{r}-block{b}-depthwise-conv2d`;
- `..._conv3`: `...conv3.conv`: `seq-{r}-block{b}-linear-conv2d`;
- `final_block_conv`: `features.final_block.conv`: `last-1x1-conv-conv2d`;
- `predictions`: `output`: `fc`.

(`_bn` of a convolution: `.bn` / `-batchnorm`; `r`, `b` the release's row and
block of the unit, `igcv3_plan.Unit`.) Both store convolutions as
`(O, I/groups, kh, kw)` and the classifier as `(classes, features)`. Every
array is checked before any is assigned: a file that does not fit loads
nothing, and the error names the width the file holds.
"""

import os

import keras

from keras_igc.applications import igcv3_plan
from keras_igc.applications.weights import Format, pytorch
from keras_igc.applications.weights.mxnet import parameter_name, read_mxnet_params

# pytorchcv's published widths, by alpha (igcv3.py declares their files).
PUBLISHED = igcv3_plan.WIDTHS
_PARTS = {"conv1": "exp", "conv2": "depthwise", "conv3": "linear"}
_FIXED = {
    "init_block": ("features.init_block", "first-3x3-conv"),
    "final_block": ("features.final_block", "last-1x1-conv"),
}
_MXNET_BATCH_NORM = {
    "weight": "gamma", "bias": "beta",
    "running_mean": "moving_mean", "running_var": "moving_var",
}  # fmt: skip


def names(model, alpha):
    """`{pytorchcv key: (variable, layout, MXNet name)}` for every weight of an
    IGCV3 model at width `alpha`."""
    units = {unit.name: unit for unit in igcv3_plan.plan(alpha)[1]}
    table = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        torch_prefix, mxnet_prefix, kind = _module(layer, units)
        if isinstance(layer, keras.layers.BatchNormalization):
            for variable in layer.weights:
                key = pytorch.BATCH_NORM[variable.name]
                table[f"{torch_prefix}.{key}"] = (
                    variable,
                    "vector",
                    f"{mxnet_prefix}_{_MXNET_BATCH_NORM[key]}",
                )
            continue
        table[f"{torch_prefix}.weight"] = (layer.kernel, kind, f"{mxnet_prefix}_weight")
        if layer.bias is not None:
            table[f"{torch_prefix}.bias"] = (
                layer.bias,
                "vector",
                f"{mxnet_prefix}_bias",
            )
    return table


def _module(layer, units):
    """`(pytorchcv module, MXNet node, layout)` of an IGCV3 layer."""
    if layer.name == "predictions":
        return "output", "fc", "linear"
    base, _, batch_norm = layer.name.partition("_bn")
    owner, _, part = base.rpartition("_")
    if owner in _FIXED and part == "conv":
        torch_prefix, mxnet_prefix = _FIXED[owner]
        torch_prefix += ".conv"
    elif owner in units and part in _PARTS:
        unit = units[owner]
        torch_prefix = f"features.stage{unit.stage}.unit{unit.unit}.{part}.conv"
        mxnet_prefix = f"seq-{unit.row}-block{unit.block}-{_PARTS[part]}"
    else:
        raise ValueError(
            f"Layer {layer.name!r} is not a layer of IGCV3; only "
            f"applications.IGCV3 models load IGCV3 weights."
        )
    if batch_norm or isinstance(layer, keras.layers.BatchNormalization):
        return torch_prefix[: -len(".conv")] + ".bn", mxnet_prefix + "-batchnorm", None
    kind = "depthwise" if isinstance(layer, keras.layers.DepthwiseConv2D) else "conv"
    return torch_prefix, mxnet_prefix + "-conv2d", kind


def read(source, table):
    """`{pytorchcv key: array}` of a pytorchcv state_dict (a dict or `.pth`)
    or an MXNet `.params` file, whose names `table` (`names` of the model to
    load) translates."""
    if not _is_mxnet(source):
        state = pytorch.read_state_dict(source)
        return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    params = {parameter_name(k): v for k, v in read_mxnet_params(source).items()}
    if "first-3x3-conv-conv2d_weight" not in params:
        raise ValueError(
            f"{source!r} is not the IGCV3 authors' MXNet checkpoint (no "
            f"first-3x3-conv-conv2d_weight); its first names: {sorted(params)[:3]}."
        )
    translation = {mxnet: key for key, (_, _, mxnet) in table.items()}
    # The classifier's names are the same with or without it in the model.
    translation.update({"fc_weight": "output.weight", "fc_bias": "output.bias"})
    return {translation.get(k, k): v for k, v in params.items()}


def _is_mxnet(source):
    return isinstance(source, str | os.PathLike) and os.fspath(source).endswith(
        ".params"
    )


def describe(state):
    """`{"alpha", "classes", "model"}` of an IGCV3 state_dict (`read`'s)."""
    stem = state.get("features.init_block.conv.weight")
    last = state.get("features.final_block.conv.weight")
    if stem is None or last is None:
        raise ValueError(
            "The state_dict is not pytorchcv's IGCV3 (no features.init_block and "
            f"final_block convolutions); its first keys: {sorted(state)[:3]}."
        )
    held = (stem.shape[0], last.shape[1], last.shape[0])
    for alpha, name in PUBLISHED.items():
        stem_width, units, last_width = igcv3_plan.plan(alpha)
        if held == (stem_width, units[-1].outputs, last_width):
            classes = (
                state["output.weight"].shape[0] if "output.weight" in state else None
            )
            return {"alpha": alpha, "classes": classes, "model": name}
    raise ValueError(
        f"The state_dict's widths (stem {held[0]}, last block {held[1]}, head "
        f"{held[2]}) are none of IGCV3's published widths {sorted(PUBLISHED)}."
    )


def load(model, source, alpha):
    """Load a pytorchcv state_dict (a dict or `.pth`) or the authors' MXNet
    `.params` into an IGCV3 model of width `alpha`."""
    is_file = isinstance(source, str | os.PathLike)
    path = os.fspath(source) if is_file else "the state_dict"
    table = names(model, alpha)
    state = read(source, table)
    held = describe(state)
    if held["alpha"] != alpha:
        raise ValueError(
            f"{path!r} holds IGCV3 at alpha={held['alpha']:g} (pytorchcv's "
            f"{held['model']}); this network has alpha={alpha:g}. Build "
            f"IGCV3(alpha={held['alpha']:g}) to load it."
        )
    headless = "output.weight" not in table
    extra = sorted(set(state) - set(table))
    if headless:  # features only: the file's classifier is not needed
        extra = [k for k in extra if not k.startswith("output.")]
    missing = sorted(set(table) - set(state))
    problems = []
    if missing:
        problems.append(f"{len(missing)} weights missing (e.g. {missing[:3]})")
    if extra:
        problems.append(f"{len(extra)} weights the model lacks (e.g. {extra[:3]})")
    pytorch.assign_checked(
        table, state, path, model, problems,
        advice=" Build IGCV3 with the file's `classes` (1000 for ImageNet), or "
        "include_top=False.",
    )  # fmt: skip
    return model


# IGCV3's checkpoints (`Sources` of igcv3.py): pytorchcv's state_dicts and
# the authors' MXNet checkpoint, whose names map onto the same layers.
FORMATS = (
    Format(
        pytorch.TORCH_SUFFIXES, "a pytorchcv state_dict ('*.pth')", load,
        dicts=True,
    ),
    Format((".params",), "the IGCV3 authors' MXNet checkpoint ('*.params')", load),
)  # fmt: skip

"""PyTorch state_dicts (the MSGC release, torchvision) into the MSGC hosts.

The hosts' Keras layer names map one to one onto the release's module names
(which are torchvision's, plus the generators `maskgenK` / `attgenK`):

- `stem_conv`, `stem_bn`: `conv1`, `bn1` (MobileNetV2 `Conv1`, `bn_Conv1`:
  `features.0.0`, `.1`);
- `stage{s}_{b}_{k}_conv`, `_{k}_bn`: `layer{s}.{b-1}.conv{k}`, `.bn{k}`;
- `stage{s}_{b}_proj`, `_proj_bn`: `layer{s}.{b-1}.downsample.0`, `.1`;
- MobileNetV2 `block_{i}_expand`, `_depthwise`, `_project` (each with its
  `_BN`): `features.{i+1}.conv.0.0`, `.0.1`, `.1.0`, `.1.1`, `.2`, `.3`;
- the generators of convolution `k`: `maskgen{k}`, `attgen{k}` (MobileNetV2:
  `features.{i+1}.maskgen`, `attgen`), their layers `conv.0`, `conv.1`,
  `conv.3`;
- `predictions`: `fc` (MobileNetV2 `classifier.1`).

Layouts: convolutions `(O, I/g, kh, kw)` -> `(kh, kw, I/g, O)` (an MSGC
convolution's grouped kernel has the dense kernel's shape, so a torchvision
kernel loads into it as it is); depthwise `(C, 1, kh, kw)` -> `(kh, kw, C, 1)`;
linear and the generators' 1x1 layers `(O, I[, 1, 1])` -> `(I, O)`; BatchNorm
weight, bias, running mean and variance -> gamma, beta, moving mean and
variance. Every array is checked before any is assigned: a wrong file loads
nothing. Reading a `.pth` file needs PyTorch (`pip install torch`); a dict of
arrays needs nothing.
"""

import os
import re

import keras
import numpy as np

from keras_igc.applications.weights import Format
from keras_igc.layers import MACRegularizer, MSGCConv2D

TORCH_SUFFIXES = (".pth", ".pth.tar", ".pt")
BATCH_NORM = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
_GENERATOR = {"reduce": "conv.0", "norm": "conv.1", "expand": "conv.3"}


def is_torch_file(path):
    return isinstance(path, str | os.PathLike) and os.fspath(path).endswith(
        TORCH_SUFFIXES
    )


def read_state_dict(source):
    """`{key: numpy array}` from a dict or a `.pth`/`.pth.tar` file.

    Accepts a state_dict, `{"state_dict": ...}` (the release's checkpoints)
    or `{"model": ...}`, with or without DistributedDataParallel's `module.`
    prefixes.
    """
    if isinstance(source, str | os.PathLike):
        source = _torch_load(os.fspath(source))
    if not isinstance(source, dict):
        raise ValueError(
            f"Expected a state_dict (a dict of arrays). Received a "
            f"{type(source).__name__}."
        )
    for wrapper in ("state_dict", "model"):
        if isinstance(source.get(wrapper), dict):
            source = source[wrapper]
    state = {}
    for key, value in source.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        state[re.sub(r"^module\.", "", key)] = np.asarray(value)
    return state


def _torch_load(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at {path!r}.")
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"Reading {path!r} needs PyTorch: `pip install torch` (CPU is "
            f"enough), or pass the state_dict as a dict of NumPy arrays."
        ) from error
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise ValueError(
            f"{path!r} is not a PyTorch checkpoint that torch.load can read "
            f"({type(error).__name__}: {error})."
        ) from error


def torch_names(model):
    """`{PyTorch key: (Keras variable, kind)}` for every weight of a host."""
    family = _family(model)
    names = {}
    for layer in model.layers:
        if not layer.weights or isinstance(layer, MACRegularizer):
            continue  # the regularizer's variables are state, not weights
        prefix = family(layer.name)
        if prefix is None:
            raise ValueError(
                f"Layer {layer.name!r} of {model.name!r} has no PyTorch "
                f"counterpart; only the MSGC hosts and their dense networks load "
                f"PyTorch weights."
            )
        if isinstance(layer, MSGCConv2D):
            names[f"{prefix}.weight"] = (layer.conv.kernel, "conv")
            for generator, kind in (
                (layer.mask_generator, "maskgen"),
                (layer.attention_generator, "attgen"),
            ):
                if generator is not None:
                    names.update(_generator_names(generator, _generator(prefix, kind)))
        else:
            names.update(_layer_names(layer, prefix))
    return names


def _layer_names(layer, prefix):
    names = {}
    if isinstance(layer, keras.layers.BatchNormalization):
        for variable in layer.weights:
            names[f"{prefix}.{BATCH_NORM[variable.name]}"] = (variable, "vector")
        return names
    kind = {
        keras.layers.DepthwiseConv2D: "depthwise",
        keras.layers.Conv2D: "conv",
        keras.layers.Dense: "linear",
    }[type(layer)]
    names[f"{prefix}.weight"] = (layer.weights[0], kind)
    if len(layer.weights) > 1:
        names[f"{prefix}.bias"] = (layer.weights[1], "vector")
    return names


def _generator_names(generator, prefix):
    names = {}
    for sublayer, module in _GENERATOR.items():
        layer = getattr(generator, sublayer)
        names.update(_layer_names(layer, f"{prefix}.{module}"))
    return names


def _generator(prefix, kind):
    """`layer1.0.conv2` -> `layer1.0.maskgen2`; `features.3.conv.2` ->
    `features.3.maskgen`."""
    resnet = re.fullmatch(r"(layer\d\.\d+)\.conv(\d)", prefix)
    if resnet:
        return f"{resnet.group(1)}.{kind}{resnet.group(2)}"
    return re.sub(r"\.conv\.\d+$", f".{kind}", prefix)


def _resnet_name(name):
    fixed = {"stem_conv": "conv1", "stem_bn": "bn1", "predictions": "fc"}
    if name in fixed:
        return fixed[name]
    match = re.fullmatch(r"stage(\d)_(\d+)_(\d)_(conv|bn)", name)
    if match:
        stage, block, index, kind = match.groups()
        return f"layer{stage}.{int(block) - 1}.{kind}{index}"
    match = re.fullmatch(r"stage(\d)_(\d+)_proj(_bn)?", name)
    if match:
        stage, block, bn = match.groups()
        return f"layer{stage}.{int(block) - 1}.downsample.{1 if bn else 0}"
    return None


def _mobilenet_name(name, blocks):
    fixed = {
        "Conv1": "features.0.0",
        "bn_Conv1": "features.0.1",
        "Conv_1": f"features.{blocks + 1}.0",
        "Conv_1_bn": f"features.{blocks + 1}.1",
        "predictions": "classifier.1",
    }
    if name in fixed:
        return fixed[name]
    match = re.fullmatch(r"(expanded_conv|block_(\d+))_(\w+)", name)
    if match is None:
        return None
    index = 0 if match.group(2) is None else int(match.group(2))
    # The first block has no expansion: its modules are numbered one lower.
    parts = [
        "expand",
        "expand_BN",
        "depthwise",
        "depthwise_BN",
        "project",
        "project_BN",
    ]
    modules = ["conv.0.0", "conv.0.1", "conv.1.0", "conv.1.1", "conv.2", "conv.3"]
    if index == 0:
        modules = [None, None, "conv.0.0", "conv.0.1", "conv.1", "conv.2"]
    if match.group(3) not in parts:
        return None
    module = modules[parts.index(match.group(3))]
    return None if module is None else f"features.{index + 1}.{module}"


def _family(model):
    names = {layer.name for layer in model.layers}
    if "stem_conv" in names:
        return _resnet_name
    if "Conv1" in names:
        blocks = 1 + sum(bool(re.fullmatch(r"block_\d+_project", n)) for n in names)
        return lambda name: _mobilenet_name(name, blocks)
    raise ValueError(
        f"{model.name!r} is not an MSGC host or one of their dense networks "
        f"(applications.MSGCResNet18/50, MSGCMobileNetV2, ResNet50): its "
        f"layers have no PyTorch names."
    )


# Keras layout -> PyTorch's, per kind (`to_keras` undoes it).
_TO_TORCH = {"conv": (3, 2, 0, 1), "depthwise": (2, 3, 0, 1), "linear": (1, 0)}


def to_torch(array, kind):
    """A Keras weight in PyTorch's layout (a 1x1 generator's `linear` kernel
    as `(O, I)`)."""
    axes = _TO_TORCH.get(kind)
    return array if axes is None else np.transpose(array, axes)


def to_keras(array, kind):
    if kind == "conv":
        return np.transpose(array, (2, 3, 1, 0))
    if kind == "depthwise":
        return np.transpose(array, (2, 3, 0, 1))
    if kind == "linear":
        return array.reshape(array.shape[0], -1).T
    return array


def load_torch_weights(model, source, dense=False):
    """Load a PyTorch state_dict into an MSGC host (or its dense network).

    Args:
        model: built by `applications.MSGCResNet18/50`, `MSGCMobileNetV2` or
            `applications.ResNet50`.
        source: a state_dict (dict of tensors or arrays) or a `.pth` /
            `.pth.tar` file (the release's `{"state_dict": ...}` and
            `module.` prefixes are unwrapped).
        dense: the state_dict is a dense network's (torchvision's): the
            generators are not in it and keep their initialisation.

    Raises:
        ValueError: keys missing or left over, or shapes that differ; nothing
            is assigned then.
    """
    where = source if isinstance(source, str | os.PathLike) else "the state_dict"
    state = {
        k: v for k, v in read_state_dict(source).items()
        if not k.endswith("num_batches_tracked")
    }  # fmt: skip
    names = torch_names(model)
    generators = {k for k in names if re.search(r"\.(maskgen|attgen)\d*\.", k)}
    wanted = set(names) - generators if dense else set(names)
    missing = sorted(wanted - set(state))
    extra = set(state) - set(names)
    problems = []
    if missing:
        problems.append(f"{len(missing)} weights missing (e.g. {missing[:3]})")
    if extra:
        hint = ""
        if any(re.search(r"\.attgen", k) for k in extra):
            hint = " (the checkpoint has attention: build with attention=True)"
        elif any(re.search(r"\.(maskgen|attgen)", k) for k in extra):
            hint = " (an MSGC checkpoint: load it with `weights=`)"
        problems.append(
            f"{len(extra)} weights the model does not have{hint} (e.g. "
            f"{sorted(extra)[:3]})"
        )
    assign_checked(
        names, state, where, model, problems,
        advice=" Check the network, `attention`, `heads`, `classes` (1000 for "
        "ImageNet checkpoints) and `alpha`.",
    )  # fmt: skip
    return sorted(set(state) & set(names))


def assign_checked(names, state, where, model, problems, advice=""):
    """Assign every array of `state` that `names` (`{key: (variable, kind,
    ...)}`) maps, in Keras' layout, or none of them: a shape that differs
    joins `problems`, and any problem is a ValueError naming `where`."""
    assignments = []
    for key in sorted(set(state) & set(names)):
        variable, kind = names[key][:2]
        value = to_keras(state[key], kind)
        if tuple(value.shape) != tuple(variable.shape):
            problems.append(
                f"{key}: {tuple(state[key].shape)} in the file, the model's "
                f"{variable.path} needs {tuple(variable.shape)} as PyTorch "
                f"{_from_keras_shape(variable.shape, kind)}"
            )
        assignments.append((variable, value))
    if problems:
        raise ValueError(
            f"{where} does not fit {model.name!r}: "
            + "; ".join(problems[:6])
            + ". Nothing was loaded."
            + advice
        )
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))


def _from_keras_shape(shape, kind):
    return to_torch(np.broadcast_to(np.float32(0), tuple(shape)), kind).shape


def generator_name(model, layer_name, kind="maskgen"):
    """The release's module name of an MSGC layer's generator, e.g.
    `stage1_1_2_conv` -> `layer1.0.maskgen2` (`kind="attgen"`: attention)."""
    return _generator(_family(model)(layer_name), kind)


def describe_state_dict(state):
    """`{"host", "attention", "classes", "dense"}` of a release or torchvision
    state_dict (as `read_state_dict` returns it)."""
    keys = set(state)
    if "fc.weight" in keys:
        host = "MSGCResNet50" if "layer1.0.conv3.weight" in keys else "MSGCResNet18"
        classes = state["fc.weight"].shape[0]
    elif "classifier.1.weight" in keys:
        host, classes = "MSGCMobileNetV2", state["classifier.1.weight"].shape[0]
    else:
        raise ValueError(
            "The state_dict is neither a ResNet (fc.weight) nor a MobileNetV2 "
            f"(classifier.1.weight); its first keys: {sorted(keys)[:5]}."
        )
    return {
        "host": host,
        "attention": any(".attgen" in k for k in keys),
        "classes": int(classes),
        "dense": not any(".maskgen" in k for k in keys),
    }


# The MSGC hosts' checkpoints (`Sources` of msgc_hosts.py).
FORMAT = Format(
    TORCH_SUFFIXES,
    "a checkpoint of the MSGC authors' PyTorch release or a torchvision "
    "state_dict ('*.pth', '*.pth.tar')",
    load_torch_weights,
    dicts=True,
)

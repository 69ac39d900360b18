"""An authors' checkpoint to the network it holds, with its weights.

It reads the file with the network's own `WEIGHTS` (its `Sources`), as its
builder's `weights=` does.

One reader for the `keras-igc convert` command and the keras-hub presets
(`keras_igc.hub.convert_to_preset`): it says which network the file holds, the
registered name and arguments that rebuild it, and the input normalisation
its weights expect.
"""

import dataclasses

import keras

from keras_igc.applications import igcv3, msgc_hosts
from keras_igc.applications.imagenet import from_release_weights
from keras_igc.applications.registry import get_model, lookup, msgc_host
from keras_igc.applications.weights import pytorch, pytorchcv
from keras_igc.applications.weights.mxnet import (
    describe_release_weights,
    read_mxnet_params,
)

# The IGC release's ImageNet checkpoints as registered names (`get_model`).
_RELEASE_ARCHITECTURES = {
    "IGC-L4M32+Ident.": "IGC-L4M32+Ident.",
    "IGC-L16M16+Ident.": "IGC-L16M16+Ident.",
    "IGC-L100M2+Ident.": "IGC-L100M2+Ident.",
    "ResNet-18 (C=64)": "ResNet-18-C64",
    "ResNet-18 (C=69)": "ResNet-18-C69",
}


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """What `from_checkpoint` read.

    Attributes:
        model: the network (keras.applications conventions, softmax top) with
            the checkpoint's weights.
        paper_name: what the file holds, as the papers name it.
        architecture: the registered name (`applications.get_model`) that
            rebuilds the network with `arguments` (`igc_imagenet_network` for
            a release graph of other widths).
        arguments: builder arguments besides `classes`.
        classes: classifier size.
        normalization: the `keras_igc.statistics.NORMALIZATIONS` key of the
            input the weights expect.
    """

    model: keras.Model
    paper_name: str
    architecture: str
    arguments: dict
    classes: int
    normalization: str


def from_checkpoint(path, expect=None):
    """The network of an IGC or IGCV3 release checkpoint (`.params`, MXNet),
    an MSGC release checkpoint, a torchvision state_dict or a pytorchcv IGCV3
    state_dict (`.pth`, `.pth.tar`; needs PyTorch to read), with its weights.

    Args:
        path: the checkpoint.
        expect: optional paper or registered name the file must hold (e.g.
            "IGC-L100M2+Ident.", "MSGC-ResNet18"); another network is an error.

    Returns:
        A `Checkpoint`.
    """
    if pytorch.is_torch_file(path):
        state = pytorch.read_state_dict(path)
        if "features.init_block.conv.weight" in state:
            return _from_igcv3(path, state, expect)
        return _from_torch(path, state, expect)
    params = read_mxnet_params(path)
    if any(name.endswith("first-3x3-conv-conv2d_weight") for name in params):
        return _from_igcv3(path, _igcv3_state(params), expect)
    return _from_mxnet(path, params, expect)


def _igcv3_state(params):
    """The widths-and-classes view `pytorchcv.describe` reads, from the
    IGCV3 authors' MXNet names (the release's graph is 1.0x)."""
    named = {k.split(":", 1)[-1]: v for k, v in params.items()}
    return {
        "features.init_block.conv.weight": named["first-3x3-conv-conv2d_weight"],
        "features.final_block.conv.weight": named["last-1x1-conv-conv2d_weight"],
        "output.weight": named["fc_weight"],
    }


def _from_igcv3(path, state, expect):
    """IGCV3 from pytorchcv's state_dict or the authors' MXNet checkpoint."""
    held = pytorchcv.describe(state)
    name = f"IGCV3-{held['alpha']:g}"
    if expect is not None and lookup(expect) is not lookup(name):
        raise ValueError(f"{path!r} holds {name} ({held['model']}), not {expect!r}.")
    model = get_model(name, classes=held["classes"])
    igcv3.WEIGHTS.load(model, path, alpha=held["alpha"])
    return Checkpoint(
        model=model,
        paper_name=f"{name} ({held['model']})",
        architecture=name,
        arguments={},
        classes=held["classes"],
        normalization="torch",
    )


def _from_mxnet(path, params, expect):
    network = describe_release_weights(params)
    if expect is not None and expect != network["paper_name"]:
        raise ValueError(f"{path!r} holds {network['paper_name']}, not {expect!r}.")
    architecture = _RELEASE_ARCHITECTURES.get(network["paper_name"])
    arguments = {}
    if architecture is None:  # a narrowed graph: the generic builder's widths
        architecture = "igc_imagenet_network"
        arguments = {
            "stem_width": network["stem"],
            "stage_widths": list(network["widths"]),
            "primary_partitions": network["primary_partitions"],
            "secondary_partitions": network["secondary_partitions"],
        }
    return Checkpoint(
        model=from_release_weights(params),
        paper_name=network["paper_name"],
        architecture=architecture,
        arguments=arguments,
        classes=network["classes"],
        normalization="igc-release",
    )


def _from_torch(path, state, expect):
    network = pytorch.describe_state_dict(state)
    if expect is not None and msgc_host(expect) != network["host"]:
        raise ValueError(f"{path!r} holds {network['host']}, not {expect!r}.")
    arguments = {"attention": network["attention"]}
    model = get_model(network["host"], classes=network["classes"], **arguments)
    msgc_hosts.WEIGHTS.load(model, state, dense=network["dense"])
    name = network["host"] + (" with attention" if network["attention"] else "")
    if network["dense"]:
        name += " (dense weights: every gate starts open)"
    return Checkpoint(
        model=model,
        paper_name=name,
        architecture=network["host"],
        arguments=arguments,
        classes=network["classes"],
        normalization="torch",
    )

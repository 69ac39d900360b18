"""The IGC authors' MXNet checkpoints (`*.params`) in keras_igc's networks.

The release (hellozting/InterleavedGroupConvolutions, `models/`) ships trained
ImageNet weights of IGC-L4M32+Ident., IGC-L16M16+Ident., IGC-L100M2+Ident. and
ResNet-18 (C = 64 and 69) as MXNet NDArray lists. This module reads that
format with NumPy alone (MXNet is not needed), maps the release's parameter
names (`arg:g1_b1_conv1_conv1_weight`, `aux:g0_bn_moving_var`, ...) onto the
layers of `keras_igc.applications`, and can build the network a file
describes. CIFAR checkpoints of the release's `plain_igc.py` and
`resnet_igc.py` graphs load the same way into `IGCNet*` / `igc_cifar_network`
(residual ones with `transition="release"`).

Every check happens before any weight is set: a file that is not an MXNet
NDArray list, a truncated one, another network's weights, a missing or extra
name, or a shape that does not fit raises `ReleaseWeightsError` naming it.
"""

import os
import re
import struct

import numpy as np

from keras_igc.applications.weights import Format

LIST_MAGIC = 0x112
NDARRAY_MAGICS = {0xF993FAC8: 1, 0xF993FAC9: 2, 0xF993FACA: 3}
DTYPES = {0: "<f4", 1: "<f8", 2: "<f2", 3: "u1", 4: "<i4", 5: "i1", 6: "<i8"}


class ReleaseWeightsError(ValueError):
    """A release checkpoint that cannot be read or does not fit the network."""


def read_mxnet_params(path):
    """`{name: array}` from an MXNet NDArray-list file (`mx.nd.save`).

    Reads the legacy, V1, V2 and V3 array formats (dense arrays), the names
    as saved (`arg:` / `aux:` prefixes kept).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise ReleaseWeightsError(f"Cannot read {path!r}: {error.strerror}.") from None
    reader = _Reader(data, path)
    if data[:8] != struct.pack("<Q", LIST_MAGIC):
        raise ReleaseWeightsError(
            f"{path!r} is not an MXNet .params file: {_what_it_looks_like(data)}. "
            f"Pass a release checkpoint such as "
            f"resnet_gcwf_noshare_imagenet_d18b100-0095.params."
        )
    reader.take(16, "the file header")  # the magic number, then a reserved word
    count = reader.unpack("<Q", "the number of arrays")
    arrays = [reader.array(index, count) for index in range(count)]
    names = []
    for index in range(reader.unpack("<Q", "the number of names")):
        length = reader.unpack("<Q", f"the length of name {index}")
        names.append(reader.take(length, f"name {index}").decode("utf-8"))
    if len(names) != count:
        raise ReleaseWeightsError(
            f"{path!r} holds {count} arrays but {len(names)} names; it is not a "
            f"named checkpoint (mx.nd.save of a dict)."
        )
    return dict(zip(names, arrays, strict=True))


class _Reader:
    def __init__(self, data, path):
        self.data, self.path, self.offset = data, path, 0

    def take(self, size, what):
        if self.offset + size > len(self.data):
            raise ReleaseWeightsError(
                f"{self.path!r} is truncated: it ends at byte {len(self.data)} "
                f"while reading {what}. Download the file again."
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def array(self, index, count):
        what = f"array {index + 1} of {count}"
        first = self.unpack("<I", what)
        version = NDARRAY_MAGICS.get(first, 0)
        if version >= 2:
            storage = self.unpack("<i", what)
            if storage != 0:
                raise ReleaseWeightsError(
                    f"{self.path!r}: {what} is a sparse array; only dense "
                    f"checkpoints are supported."
                )
        if version == 0:  # legacy: no magic, 32-bit dimensions
            ndim, dim_format = first, "<I"
        else:
            ndim, dim_format = self.unpack("<i", what), "<q"
        shape = tuple(self.unpack(dim_format, what) for _ in range(ndim))
        if ndim == 0:
            return np.zeros((0,), "float32")
        self.take(8, what)  # the device the array was saved from
        type_flag = self.unpack("<i", what)
        if type_flag not in DTYPES:
            raise ReleaseWeightsError(
                f"{self.path!r}: {what} has an unknown element type {type_flag}."
            )
        dtype = np.dtype(DTYPES[type_flag])
        size = int(np.prod(shape)) * dtype.itemsize
        return np.frombuffer(self.take(size, what), dtype).reshape(shape).copy()


def _what_it_looks_like(data):
    if data[:4] == b"PK\x03\x04":
        return "it is a zip archive (a PyTorch .pth or a Keras .keras file?)"
    if data[:1] == b"\x80":
        return "it is a Python pickle (a PyTorch or NumPy file?)"
    if data[:8] == b"\x89HDF\r\n\x1a\n":
        return "it is an HDF5 file (Keras weights? use model.load_weights)"
    return f"it does not start with MXNet's NDArray-list header {LIST_MAGIC:#x}"


# Keras layer name -> the release's node name, per graph family. A node holds
# `_weight` (convolutions, `_conv1_weight` / `_conv2_weight` for the primary
# and secondary convolutions of an IGC block), `_gamma`, `_beta`,
# `_moving_mean`, `_moving_var` (BatchNorm) or `_weight`, `_bias` (classifier).
_UNIT = r"stage(\d+)_(\d+)_(\d+)"
_BLOCK = r"stage(\d+)_(\d+)"
FAMILIES = {
    # network/resnet_igc_imgnet_d18.py and the IGC symbol files
    "imagenet-igc": [
        ("stem_conv", "g0_conv"),
        ("stem_bn", "g0_bn"),
        (_BLOCK + "_proj", r"g\1_b\2_proj_conv"),
        (_BLOCK + "_proj_bn", r"g\1_b\2_proj_bn"),
        (_UNIT + "_conv", r"g\1_b\2_conv\3"),
        (_UNIT + "_bn", r"g\1_b\2_conv\3_bn"),
        ("predictions", "fc_score"),
    ],
    # network/resnet_imgnet_d18.py
    "imagenet-resnet": [
        ("stem_conv", "g0"),
        ("stem_bn", "g0_bn"),
        (_BLOCK + "_proj", r"g\1_b\2_proj"),
        (_BLOCK + "_proj_bn", r"g\1_b\2_proj_bn"),
        (_UNIT + "_conv", r"g\1_b\2_conv\3"),
        (_UNIT + "_bn", r"g\1_b\2_conv\3_bn"),
        ("predictions", "fc_score"),
    ],
    # network/plain_igc.py
    "cifar-plain-igc": [
        ("stem_conv", "g0_conv"),
        ("stem_bn", "g0_bn"),
        (_BLOCK + "_conv", r"g\1_b\2"),
        (_BLOCK + "_bn", r"g\1_b\2_bn"),
        ("predictions", "fc_score"),
    ],
    # network/resnet_igc.py
    "cifar-resnet-igc": [
        ("stem_conv", "g0_conv"),
        ("stem_bn", "g0_bn"),
        (_BLOCK + "_proj", r"g\1_b\2_p0_line_conv"),
        (_BLOCK + "_proj_bn", r"g\1_b\2_p0_line_bn"),
        (_UNIT + "_conv", r"g\1_b\2_p2_two\3"),
        (_UNIT + "_bn", r"g\1_b\2_p2_two\3_bn"),
        ("predictions", "fc"),
    ],
}


HINTS = {
    "cifar-resnet-igc": " (the release's residual CIFAR networks are built with "
    "transition='release')",
}


def family_of(names):
    """Which release graph a checkpoint's parameter names come from."""
    names = {parameter_name(n) for n in names}
    if "g0_weight" in names:
        return "imagenet-resnet"
    if "g1_b1_conv1_conv1_weight" in names:
        return "imagenet-igc"
    if "g1_b1_p2_two1_conv1_weight" in names:
        return "cifar-resnet-igc"
    if "g1_b1_conv1_weight" in names and "g0_conv_weight" in names:
        return "cifar-plain-igc"
    raise ReleaseWeightsError(
        "The checkpoint is not one of the IGC release's networks (no g0 stem "
        f"weight); its first names: {sorted(names)[:5]}."
    )


def parameter_name(name):
    """A parameter's name without MXNet's `arg:` / `aux:` prefix."""
    return name.split(":", 1)[1] if name[:4] in ("arg:", "aux:") else name


def _release_node(layer_name, family):
    # The two convolutions of the release's widening unit (`transition=
    # "release"`) are separate layers: `<unit>_primary` and `<unit>_secondary`.
    for part, suffix in (("_primary", "_conv1"), ("_secondary", "_conv2")):
        if layer_name.endswith(part):
            node = _release_node(layer_name[: -len(part)], family)
            return node and node + suffix
    for pattern, node in FAMILIES[family]:
        if re.fullmatch(pattern, layer_name):
            return re.sub(pattern, node, layer_name)
    return None


def _targets(model, family):
    """`[(release name, variable, MXNet -> Keras layout function)]`."""
    import keras

    from keras_igc.layers import IGCConv2D

    def conv(array):  # (O, I/g, kh, kw) -> (kh, kw, I/g, O)
        return array.transpose(2, 3, 1, 0)

    targets = []
    for layer in model.layers:
        if not layer.weights:
            continue
        node = _release_node(layer.name, family)
        if node is None:
            raise ReleaseWeightsError(
                f"Layer {layer.name!r} of {model.name!r} has no counterpart in the "
                f"release's {family} graph; build the network with "
                f"keras_igc.applications."
            )
        if isinstance(layer, IGCConv2D):
            targets.append((f"{node}_conv1_weight", layer.primary.kernel, conv))
            targets.append((f"{node}_conv2_weight", layer.secondary.kernel, conv))
        elif isinstance(layer, keras.layers.BatchNormalization):
            for suffix, variable in (
                ("gamma", layer.gamma),
                ("beta", layer.beta),
                ("moving_mean", layer.moving_mean),
                ("moving_var", layer.moving_variance),
            ):
                targets.append((f"{node}_{suffix}", variable, None))
        elif isinstance(layer, keras.layers.Dense):
            targets.append((f"{node}_weight", layer.kernel, np.transpose))
            targets.append((f"{node}_bias", layer.bias, None))
        elif isinstance(layer, keras.layers.Conv2D):  # GroupConv2D too
            targets.append((f"{node}_weight", layer.kernel, conv))
        else:
            raise ReleaseWeightsError(
                f"Layer {layer.name!r} ({type(layer).__name__}) cannot take "
                f"release weights."
            )
    return targets


def load_release_weights(model, params):
    """Set `model`'s weights from a release checkpoint (path or dict).

    All names and shapes are checked first; nothing is set unless everything
    fits. A model without its classifier (`include_top=False`) takes every
    weight but the release's classifier.
    """
    path = params if isinstance(params, str | os.PathLike) else "the checkpoint"
    if not isinstance(params, dict):
        params = read_mxnet_params(os.fspath(params))
    weights = {parameter_name(name): array for name, array in params.items()}
    family = family_of(weights)
    targets = _targets(model, family)
    expected = {name for name, _, _ in targets}
    missing = sorted(expected - set(weights))
    extra = sorted(set(weights) - expected)
    classifier = FAMILIES[family][-1][1]
    if not any(name.startswith(classifier + "_") for name in expected):
        extra = [n for n in extra if not n.startswith(classifier + "_")]
    if missing or extra:
        raise ReleaseWeightsError(
            f"{path} does not fit {model.name!r} ({family} graph): "
            + "; ".join(
                part
                for part in (
                    missing and f"missing {_some(missing)}",
                    extra and f"not in the network {_some(extra)}",
                )
                if part
            )
            + ". It holds another network's weights: build the network it "
            "describes with keras_igc.applications.from_release_weights(path)."
        )
    values = []
    for name, variable, layout in targets:
        array = weights[name]
        value = layout(array) if layout is not None else array
        if tuple(value.shape) != tuple(variable.shape):
            raise ReleaseWeightsError(
                f"{path}: parameter {name!r} has shape {tuple(array.shape)} "
                f"(MXNet layout), which does not fit {variable.path} of shape "
                f"{tuple(variable.shape)}. It holds another network's weights"
                + HINTS.get(family, "")
                + "."
            )
        values.append((variable, value))
    for variable, value in values:
        variable.assign(value.astype(variable.dtype))
    return model


def _some(names, count=4):
    more = f" and {len(names) - count} more" if len(names) > count else ""
    return ", ".join(repr(n) for n in names[:count]) + more


# (family, L or None, M or None, stem, widths) -> the paper's name and the
# builder's model name.
RELEASE_NETWORKS = {
    ("imagenet-igc", 4, None, 128, (128, 256, 512, 1024)): (
        "IGC-L4M32+Ident.", "igc_l4m32_ident"),
    ("imagenet-igc", 16, None, 256, (256, 512, 1024, 2048)): (
        "IGC-L16M16+Ident.", "igc_l16m16_ident"),
    ("imagenet-igc", None, 2, 100, (200, 400, 800, 1600)): (
        "IGC-L100M2+Ident.", "igc_l100m2_ident"),
    ("imagenet-resnet", None, None, 64, (64, 128, 256, 512)): (
        "ResNet-18 (C=64)", "resnet18_c64"),
    ("imagenet-resnet", None, None, 69, (69, 138, 276, 552)): (
        "ResNet-18 (C=69)", "resnet18_c69"),
}  # fmt: skip


def describe_release_weights(params):
    """What ImageNet network a release checkpoint holds, from its shapes.

    Returns:
        A dict: `family`, `stem`, `widths` (four stages), `primary_partitions`
        (L when it is the same in every stage, else None),
        `secondary_partitions` (M likewise), `classes`, `paper_name` (e.g.
        "IGC-L100M2+Ident.", or a description for other widths) and `name`.
    """
    weights = {parameter_name(name): array for name, array in params.items()}
    family = family_of(weights)
    if not family.startswith("imagenet"):
        raise ReleaseWeightsError(
            f"The checkpoint holds a CIFAR network ({family}); load it with "
            f"keras_igc.applications.igc_cifar_network(depth, ..., weights=path)."
        )
    igc = family == "imagenet-igc"
    stem = weights["g0_conv_weight" if igc else "g0_weight"].shape[0]
    widths, partitions = [], []
    for stage in range(1, 5):
        blocks = {
            int(match.group(1))
            for name in weights
            if (match := re.match(rf"g{stage}_b(\d+)_", name))
        }
        if blocks != {1, 2}:
            raise ReleaseWeightsError(
                f"The checkpoint's stage {stage} has blocks {sorted(blocks)}; the "
                f"release's ImageNet networks have two per stage (ResNet-18)."
            )
        if not igc:
            widths.append(weights[f"g{stage}_b1_conv1_weight"].shape[0])
            continue
        # The second unit reads and writes the stage width G: (G, G/L, 3, 3).
        primary = weights[f"g{stage}_b1_conv2_conv1_weight"]
        widths.append(primary.shape[0])
        L = primary.shape[0] // primary.shape[1]
        partitions.append((L, primary.shape[0] // L))
    L = M = None
    if igc:
        if len({p[0] for p in partitions}) == 1:
            L = partitions[0][0]
        elif len({p[1] for p in partitions}) == 1:
            M = partitions[0][1]
        else:
            raise ReleaseWeightsError(
                f"The checkpoint's partitions (L, M) per stage are {partitions}: "
                f"neither L nor M is the same in every stage, as in the paper's "
                f"networks."
            )
    classes = weights["fc_score_weight"].shape[0]
    key = (family, L, M, stem, tuple(widths))
    paper_name, name = RELEASE_NETWORKS.get(key, (None, None))
    if paper_name is None:
        kind = f"IGC (L={L})" if L else f"IGC (M={M})" if M else "ResNet-18"
        paper_name = f"{kind} ImageNet network, stem {stem}, stages {widths}"
        name = f"release_{family.split('-')[1]}_s{stem}"
    return {
        "family": family,
        "stem": stem,
        "widths": tuple(widths),
        "primary_partitions": L,
        "secondary_partitions": M,
        "classes": classes,
        "paper_name": paper_name,
        "name": name,
    }


# The IGC networks' checkpoints (`Sources` of cifar.py, imagenet.py).
FORMAT = Format(
    (".params",),
    "a checkpoint of the IGC authors' MXNet release ('*.params')",
    load_release_weights,
    dicts=True,  # its arrays, as `read_mxnet_params` returns them
)

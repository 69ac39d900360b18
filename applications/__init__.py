"""The papers' networks as `keras.applications`-style builders
(`keras_igc.applications`).

IGC (Zhang et al., "Interleaved Group Convolutions for Deep Neural Networks",
ICCV 2017):

- CIFAR/SVHN (32x32, `cifar.py`): `IGCNet8`, `IGCNet20`, `IGCNet38` (plain),
  `IGCResNet20`, `IGCResNet38` (residual, "+Ident."), and any depth with
  `igc_cifar_network`, `regconv_cifar_network` (RegConv-Wc baselines) and
  `sum_fusion_cifar_network`.
- ImageNet (224x224, `imagenet.py`): `IGCNetL4M32`, `IGCNetL16M16`,
  `IGCNetL100M2` and, at any widths, `igc_imagenet_network`; they take the
  authors' MXNet checkpoints (`weights="...-0095.params"`, or
  `from_release_weights(path)` to build the network a checkpoint describes).

IGCV3 (Sun et al., BMVC 2018; the family's mobile network, `igcv3.py`):
`IGCV3(alpha=...)`, rows `"IGCV3-1"`, `"IGCV3-0.75"`, `"IGCV3-0.5"`,
`"IGCV3-0.25"`, with pytorchcv's weights (`weights="imagenet"` or a `.pth`)
or the authors' MXNet checkpoint.

MSGC (learned grouped convolutions, `msgc_hosts.py`; `keras_igc.msgc`):
`MSGCResNet18`, `MSGCResNet50`, `MSGCMobileNetV2`.

The dense baselines of both (`resnet.py`): `ResNet18` (IGC, width 64 or 69) and
`ResNet50` (torchvision's v1.5, which the MSGC hosts start from).

Every builder and every paper row by name (`registry.py`): `list_models()`,
`get_model(name, **kwargs)` (e.g. `"IGC-L24M2+Ident."`, `"IGCNet38"`,
`"MSGC-ResNet18"`), `summary_table()`.

This folder installs as `keras_igc.applications` (see `package_dir` in
setup.cfg).
"""

from keras_igc.applications.cifar import (
    IGCNet8,
    IGCNet20,
    IGCNet38,
    IGCResNet20,
    IGCResNet38,
    igc_cifar_network,
    regconv_cifar_network,
    sum_fusion_cifar_network,
)
from keras_igc.applications.cifar import preprocess_input as preprocess_cifar_input
from keras_igc.applications.igcv3 import IGCV3
from keras_igc.applications.igcv3 import preprocess_input as preprocess_igcv3_input
from keras_igc.applications.imagenet import (
    IGCNetL4M32,
    IGCNetL16M16,
    IGCNetL100M2,
    from_release_weights,
    igc_imagenet_network,
    imagenet_class_names,
    preprocess_input,
)
from keras_igc.applications.imagenet import (
    preprocess_input as preprocess_imagenet_input,
)
from keras_igc.applications.msgc_hosts import (
    HOSTS,
    MSGCMobileNetV2,
    MSGCResNet18,
    MSGCResNet50,
)
from keras_igc.applications.registry import (
    dataset_of,
    get_model,
    list_models,
    lookup,
    msgc_host,
    summary_table,
)
from keras_igc.applications.resnet import ResNet18, ResNet50

__all__ = [
    "HOSTS",
    "IGCNet8",
    "IGCNet20",
    "IGCNet38",
    "IGCNetL4M32",
    "IGCNetL16M16",
    "IGCNetL100M2",
    "IGCResNet20",
    "IGCResNet38",
    "IGCV3",
    "MSGCMobileNetV2",
    "MSGCResNet18",
    "MSGCResNet50",
    "ResNet18",
    "ResNet50",
    "dataset_of",
    "from_release_weights",
    "get_model",
    "igc_cifar_network",
    "igc_imagenet_network",
    "imagenet_class_names",
    "list_models",
    "lookup",
    "msgc_host",
    "preprocess_cifar_input",
    "preprocess_igcv3_input",
    "preprocess_imagenet_input",
    "preprocess_input",
    "regconv_cifar_network",
    "sum_fusion_cifar_network",
    "summary_table",
]

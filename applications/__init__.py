"""IGC networks as `keras.applications`-style builders (`keras_igc.applications`).

CIFAR/SVHN (32x32): `IGCNet8`, `IGCNet20`, `IGCNet38` (plain), `IGCResNet20`,
`IGCResNet38` (residual, "+Ident."), and any depth with
`igc_cifar_network`, `regconv_cifar_network` (RegConv-Wc baselines) and
`sum_fusion_cifar_network`. ImageNet (224x224): `IGCNetL4M32`, `IGCNetL16M16`,
`IGCNetL100M2` and the `ResNet18` baselines, which also take the authors'
MXNet checkpoints (`weights="...-0095.params"`, or `from_release_weights(path)`
to build the network a checkpoint describes). Every paper row by name:
`list_models()`, `get_model(name, **kwargs)`, `summary_table()`.

MSGC hosts (learned grouped convolutions, `keras_igc.msgc`): `MSGCResNet18`,
`MSGCResNet50`, `MSGCMobileNetV2` (`get_host(name)`), and the dense
`ResNet50` (v1.5) they start from.

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
from keras_igc.applications.imagenet import (
    IGCNetL4M32,
    IGCNetL16M16,
    IGCNetL100M2,
    ResNet18,
    from_release_weights,
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
    ResNet50,
    get_host,
    host_name,
)
from keras_igc.applications.registry import (
    dataset_of,
    get_model,
    list_models,
    summary_table,
)

__all__ = [
    "HOSTS",
    "MSGCMobileNetV2",
    "MSGCResNet18",
    "MSGCResNet50",
    "ResNet50",
    "get_host",
    "host_name",
    "IGCNet8",
    "IGCNet20",
    "IGCNet38",
    "IGCNetL4M32",
    "IGCNetL16M16",
    "IGCNetL100M2",
    "IGCResNet20",
    "IGCResNet38",
    "ResNet18",
    "dataset_of",
    "from_release_weights",
    "get_model",
    "igc_cifar_network",
    "imagenet_class_names",
    "list_models",
    "preprocess_cifar_input",
    "preprocess_input",
    "preprocess_imagenet_input",
    "regconv_cifar_network",
    "sum_fusion_cifar_network",
    "summary_table",
]

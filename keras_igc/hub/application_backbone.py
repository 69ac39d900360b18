"""The base of keras_igc's keras-hub backbones: a registered network of
`keras_igc.applications`, without its head, as a `FeaturePyramidBackbone`."""

import contextlib
import inspect
import json

import keras
from keras_hub.models import FeaturePyramidBackbone

from keras_igc.applications import registry

# keras.applications arguments: the backbone and its task own these.
_APPLICATION_ARGUMENTS = (
    "include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
    "classifier_activation", "name", "dense_weights",
)  # fmt: skip
# keras.Model arguments a keras-hub backbone config carries.
_MODEL_ARGUMENTS = ("name", "trainable")
# MobileNetV2's block ends at strides 4, 8 and 16 (Keras' layer names).
_MOBILENET_V2_LEVELS = {"P2": "block_2_add", "P3": "block_5_add", "P4": "block_12_add"}


class ApplicationBackbone(FeaturePyramidBackbone):
    """A `keras_igc.applications` network as a keras-hub backbone.

    Subclasses set `family` (`"igc"` or `"msgc"`) and may narrow `allowed`.
    The layers, their names and the weight layout are the application's
    (`include_top=False`), so the release checkpoints load into both.
    """

    family = None

    def __init__(self, architecture, image_shape=(None, None, 3), dtype=None, **kwargs):
        model_kwargs = {k: kwargs.pop(k) for k in _MODEL_ARGUMENTS if k in kwargs}
        entry = self._check(architecture, kwargs, image_shape)
        with _dtype_policy(dtype):
            # A named input: the saved config is the same on every load.
            image = keras.Input(shape=tuple(image_shape), name="images")
            network = registry.get_model(
                architecture, include_top=False, input_tensor=image, **kwargs
            )
        model_kwargs.setdefault("name", network.name)
        super().__init__(
            inputs=network.inputs[0], outputs=network.outputs[0], dtype=dtype,
            **model_kwargs,
        )  # fmt: skip
        self.architecture = entry.name
        self.image_shape = tuple(image_shape)
        self.arguments = dict(kwargs)
        self.data_format = "channels_last"
        self.pyramid_outputs = _pyramid(network, entry.dataset)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "architecture": self.architecture,
                "image_shape": self.image_shape,
                **self.arguments,
            }
        )
        return config

    @classmethod
    def allowed(cls, entry):
        return entry.family == cls.family

    @classmethod
    def _check(cls, architecture, arguments, image_shape):
        entry = registry.lookup(architecture)
        if not cls.allowed(entry):
            choices = [
                name
                for name in registry.list_models(builders=True)
                if cls.allowed(registry.lookup(name))
            ]
            raise ValueError(
                f"{cls.__name__} builds {', '.join(choices)}. Received: "
                f"architecture={architecture!r} ({cls._other_backbone(entry)})."
            )
        for argument, value in arguments.items():
            if argument in _APPLICATION_ARGUMENTS or not entry.takes(argument):
                raise ValueError(
                    f"{cls.__name__}({architecture!r}) takes no argument "
                    f"{argument!r}: it passes the builder's own arguments "
                    f"({', '.join(cls._own_arguments(entry)) or 'none'}); weights "
                    f"load with `load_weights` or a preset "
                    f"(keras_igc.hub.convert_to_preset)."
                )
            try:
                json.dumps(value)
            except TypeError:
                raise ValueError(
                    f"{cls.__name__} arguments must be plain values (numbers, "
                    f"strings, lists) to save in a preset. Received: "
                    f"{argument}={value!r}."
                ) from None
        if not isinstance(image_shape, list | tuple) or len(image_shape) != 3:
            raise ValueError(
                f"`image_shape` must be (height, width, channels), None for a "
                f"size any image may have. Received: image_shape={image_shape!r}."
            )
        return entry

    @staticmethod
    def _own_arguments(entry):
        names = inspect.signature(entry.builder).parameters
        return [n for n in names if n not in _APPLICATION_ARGUMENTS]

    @staticmethod
    def _other_backbone(entry):
        if registry.msgc_host(entry.name):
            return "an MSGC host: use keras_igc.hub.MSGCBackbone"
        if entry.family == "igc":
            return "an IGC network: use keras_igc.hub.IGCBackbone"
        return "a dense network: use keras_hub.models.ResNetBackbone"


@contextlib.contextmanager
def _dtype_policy(dtype):
    """Build every layer under `dtype` (keras-hub's per-layer dtype), then put
    the global policy back."""
    if dtype is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras.dtype_policies.get(dtype))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _pyramid(network, dataset):
    """`{"P<n>": tensor}`: each stage's output at 1/2^n of the input size.

    The networks name their stages `stage<k>_...` (ImageNet stage k at stride
    2^(k+1), CIFAR at 2^(k-1), IGCV3 at 2^k from P2); MobileNetV2 has Keras'
    block names. The last
    level is the network's output, which for an MSGC host is its
    `MACRegularizer`'s, so any model built on the pyramid keeps the MAC loss.
    """
    names = [layer.name for layer in network.layers]
    if "block_2_add" in names:
        levels = dict(_MOBILENET_V2_LEVELS)
        top = 5
    else:
        first = 2 if dataset == "imagenet" else 0
        igcv3 = "stage1_unit1_conv1" in names
        if igcv3:  # IGCV3's stage k is at stride 2^k
            first = 1
        stages = {int(n[5:].split("_")[0]) for n in names if n.startswith("stage")}
        stages = sorted(stages)
        levels = {}
        for stage in stages:
            last = [n for n in names if n.startswith(f"stage{stage}_")][-1]
            levels[f"P{first + stage - 1}"] = last
        if igcv3:  # its stride-2 stage 1 left out: P2 up, as MobileNetV2's
            del levels["P1"]
        top = first + len(stages) - 1
    pyramid = {
        level: network.get_layer(name).output
        for level, name in levels.items()
        if level != f"P{top}"
    }
    pyramid[f"P{top}"] = network.outputs[0]
    return pyramid

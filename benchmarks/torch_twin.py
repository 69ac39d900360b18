"""The IGC block and network in plain PyTorch, with weights copied from Keras.

This is the comparison the benchmark targets are stated against: the same
block (native grouped convolutions, channel shuffles) doing the same work.
"""

import copy

import numpy as np
import torch
from torch import nn


def shuffle(x, groups):
    """Channel shuffle of an NCHW tensor: the IGC permutation for `groups=L`.

    A channels_last tensor stays channels_last (the shuffle runs on its NHWC
    view), so a network converted with `.to(memory_format=torch.channels_last)`
    keeps oneDNN's native layout throughout, as a user tuning for speed would.
    """
    n, c, h, w = x.shape
    # torch.ao's FX quantization traces the network, and a traced tensor has
    # no layout to ask about: it gets the NCHW form, which quantizes the same.
    traced = isinstance(x, torch.fx.Proxy)
    if (
        not traced
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        nhwc = x.permute(0, 2, 3, 1)
        nhwc = nhwc.reshape(n, h, w, groups, c // groups).transpose(3, 4)
        return nhwc.reshape(n, h, w, c).permute(0, 3, 1, 2)
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class TorchIGC(nn.Module):
    def __init__(self, in_channels, L, M, stride=1, kernel_size=3, padding=1):
        super().__init__()
        self.L, self.M = L, M
        self.primary = nn.Conv2d(
            in_channels, L * M, kernel_size, stride, padding=padding, groups=L,
            bias=False,
        )  # fmt: skip
        self.secondary = nn.Conv2d(L * M, L * M, 1, groups=M, bias=False)

    def forward(self, x):
        x = shuffle(self.primary(x), self.L)
        return shuffle(self.secondary(x), self.M)

    def load_keras(self, layer):
        """Copy an IGCConv2D's weights (Keras HWIO -> PyTorch OIHW)."""
        primary, secondary = (
            np.asarray(w) for w in (layer.primary.kernel, layer.secondary.kernel)
        )
        with torch.no_grad():
            self.primary.weight.copy_(torch.from_numpy(primary.transpose(3, 2, 0, 1)))
            self.secondary.weight.copy_(
                torch.from_numpy(secondary.transpose(3, 2, 0, 1))
            )


def dense_conv(in_channels, width):
    return nn.Conv2d(in_channels, width, 3, padding=1, bias=False)


class TorchIGCNet(nn.Module):
    """Plain IGC network: stem, three stages of IGC -> BN -> ReLU, head."""

    def __init__(self, stages, L, M, classes=10):
        super().__init__()
        layers = [
            nn.Conv2d(3, L * M, 3, padding=1, bias=False),
            nn.BatchNorm2d(L * M),
            nn.ReLU(),
        ]
        width = L * M
        for stage in range(3):
            m = M * 2**stage
            for unit in range(stages):
                stride = 2 if stage > 0 and unit == 0 else 1
                layers += [
                    TorchIGC(width, L, m, stride),
                    nn.BatchNorm2d(L * m),
                    nn.ReLU(),
                ]
                width = L * m
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


def _torch_conv(layer, weight):
    """An `nn.Conv2d` of a Keras (Group)Conv2D, weights copied."""
    kh, kw, group_inputs, filters = weight.shape
    conv = nn.Conv2d(
        group_inputs * layer.groups, filters, (kh, kw), layer.strides,
        padding=_padding(layer), groups=layer.groups, bias=layer.use_bias,
    )  # fmt: skip
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight.transpose(3, 2, 0, 1)))
        if layer.use_bias:
            conv.bias.copy_(torch.from_numpy(np.asarray(layer.bias)))
    return _strided_same(layer, conv)


def _torch_depthwise(layer):
    """An `nn.Conv2d(groups=channels)` of a Keras DepthwiseConv2D."""
    kh, kw, channels, multiplier = np.asarray(layer.kernel).shape
    conv = nn.Conv2d(
        channels, channels * multiplier, (kh, kw), layer.strides,
        padding=_padding(layer), groups=channels, bias=layer.use_bias,
    )  # fmt: skip
    with torch.no_grad():
        weight = np.asarray(layer.kernel).reshape(kh, kw, 1, channels * multiplier)
        conv.weight.copy_(torch.from_numpy(weight.transpose(3, 2, 0, 1)))
        if layer.use_bias:
            conv.bias.copy_(torch.from_numpy(np.asarray(layer.bias)))
    return _strided_same(layer, conv)


def _is_strided_same(layer):
    return layer.padding == "same" and tuple(layer.strides) != (1, 1)


def _strided_same(layer, conv):
    """TensorFlow's "same" with strides pads the extra row and column at the
    bottom and right (e.g. Keras MobileNetV2's stem): pad as it does."""
    if not _is_strided_same(layer) or tuple(layer.kernel_size) == (1, 1):
        return conv
    pads = []
    shape = layer.input.shape[1:3]
    for size, k, s in zip(shape, layer.kernel_size, layer.strides, strict=True):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv)


def _padding(layer):
    if layer.padding == "valid" or tuple(layer.kernel_size) == (1, 1):
        return 0
    if _is_strided_same(layer):
        return 0  # `_strided_same` pads
    if any(k % 2 == 0 for k in layer.kernel_size):
        raise NotImplementedError(f"{layer.name}: 'same' padding, even kernel")
    return tuple(k // 2 for k in layer.kernel_size)


class _Op(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def _module(layer):
    """The PyTorch module (NCHW) computing what a Keras layer computes."""
    import keras

    import keras_igc

    kind = type(layer).__name__
    if isinstance(layer, keras_igc.IGCConv2D):
        if layer.use_bias:
            raise NotImplementedError(f"{layer.name}: IGCConv2D with a bias")
        primary = np.asarray(layer.primary.kernel)
        twin = TorchIGC(
            primary.shape[2] * layer.primary_partitions, layer.primary_partitions,
            layer.secondary_partitions, layer.strides[0], layer.kernel_size,
            _padding(layer),
        )  # fmt: skip
        twin.load_keras(layer)
        return twin
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return _torch_depthwise(layer)
    if isinstance(layer, keras.layers.Conv2D):
        return _torch_conv(layer, np.asarray(layer.kernel))
    if isinstance(layer, keras.layers.BatchNormalization):
        norm = nn.BatchNorm2d(layer.moving_mean.shape[0], eps=layer.epsilon)
        with torch.no_grad():
            for target, source in [
                (norm.weight, layer.gamma), (norm.bias, layer.beta),
                (norm.running_mean, layer.moving_mean),
                (norm.running_var, layer.moving_variance),
            ]:  # fmt: skip
                if source is not None:
                    target.copy_(torch.from_numpy(np.asarray(source)))
        return norm
    if isinstance(layer, keras.layers.Dense):
        linear = nn.Linear(*np.asarray(layer.kernel).shape, bias=layer.use_bias)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.asarray(layer.kernel).T))
            if layer.use_bias:
                linear.bias.copy_(torch.from_numpy(np.asarray(layer.bias)))
        return linear
    if kind == "ZeroPadding2D":
        (top, bottom), (left, right) = layer.padding
        return nn.ZeroPad2d((left, right, top, bottom))
    if kind == "MaxPooling2D" and layer.padding == "valid":
        return nn.MaxPool2d(layer.pool_size, layer.strides)
    if kind == "ReLU" and layer.max_value is None and not layer.negative_slope:
        return nn.ReLU()
    if kind == "ReLU" and layer.max_value == 6 and not layer.negative_slope:
        return nn.ReLU6()  # MobileNetV2
    if kind == "GlobalAveragePooling2D" and not layer.keepdims:
        return _Op(lambda x: x.mean((2, 3)))
    if kind == "Add":
        return _Op(lambda *xs: sum(xs))
    if kind in ("InputLayer", "Identity"):
        return nn.Identity()
    raise NotImplementedError(f"no PyTorch twin for {kind} ({layer.name})")


class KerasTwin(nn.Module):
    """A Functional Keras model as a PyTorch module (NCHW in, same weights):
    the graph walked in order, each layer by its PyTorch equivalent. Covers
    the layers of keras_igc's IGC networks (CIFAR and ImageNet)."""

    def __init__(self, model):
        super().__init__()
        from keras_igc import keras_internals

        self.layers = nn.ModuleDict()
        self.steps = []  # (layer name, input tensor ids, output tensor id)
        for node in keras_internals.graph_nodes_in_order(model):
            layer = node.operation
            if layer.name not in self.layers:
                self.layers[layer.name] = _module(layer)
            inputs = [id(t) for t in node.input_tensors]
            (output,) = node.output_tensors
            self.steps.append((layer.name, inputs, id(output)))
        self.input_id = id(model.inputs[0])
        self.output_id = id(model.outputs[0])

    def forward(self, x):
        values = {self.input_id: x}
        for name, inputs, output in self.steps:
            args = [values[i] for i in inputs] or [x]
            values[output] = self.layers[name](*args)
        return values[self.output_id]


def eager_runners(twin, label):
    """`{f"{label} NCHW" / f"{label} channels_last": (run, "nchw")}`: the
    twin eager under `torch.no_grad` in both of PyTorch's layouts
    (channels_last, oneDNN's own, is a line for a user)."""
    found = {}
    for layout, name in [
        (torch.contiguous_format, "NCHW"),
        (torch.channels_last, "channels_last"),
    ]:
        module = copy.deepcopy(twin).to(memory_format=layout)

        def eager(a, module=module, layout=layout):
            with torch.no_grad():
                tensor = torch.from_numpy(a).contiguous(memory_format=layout)
                return module(tensor).numpy()

        found[f"{label} {name}"] = (eager, "nchw")
    return found


def compiled_runner(twin):
    """`{"torch compiled channels_last": (run, "nchw")}`: the twin under
    `torch.compile` (Inductor, default mode) in its faster CPU layout, as
    `benchmarks.networks --torch-compile` runs it. The first call at each
    batch size compiles (a turn's untimed call), for that size only: with
    dynamic shapes Inductor fails on IGC-L100M2's grouped 1x1 convolutions
    (torch 2.13, "ValueRangeError: Invalid ranges [0:-1]")."""
    module = copy.deepcopy(twin).eval().to(memory_format=torch.channels_last)
    module = torch.compile(module, dynamic=False)

    def compiled(a):
        with torch.no_grad():
            tensor = torch.from_numpy(a).contiguous(memory_format=torch.channels_last)
            return module(tensor).numpy()

    return {"torch compiled channels_last": (compiled, "nchw")}


def pytorchcv_igcv3(model, alpha=1.0):
    """pytorchcv's own IGCV3 (`igcv3_w1`, ...) with the weights of a keras_igc
    `applications.IGCV3` model (its names: `pytorchcv.names`)."""
    from pytorchcv.models import igcv3

    from keras_igc.applications.weights import pytorch, pytorchcv

    builder = getattr(igcv3, pytorchcv.PUBLISHED[alpha])
    net = builder(num_classes=model.output_shape[-1]).eval()
    state = {
        key: torch.from_numpy(pytorch.to_torch(np.asarray(variable), kind).copy())
        for key, (variable, kind, _) in pytorchcv.names(model, alpha).items()
    }
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all("num_batches" in k for k in missing), missing
    return net

"""The IGC block and network in plain PyTorch, with weights copied from Keras.

This is the comparison the benchmark targets are stated against: the same
block (native grouped convolutions, channel shuffles) doing the same work.
"""

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
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        nhwc = x.permute(0, 2, 3, 1)
        nhwc = nhwc.reshape(n, h, w, groups, c // groups).transpose(3, 4)
        return nhwc.reshape(n, h, w, c).permute(0, 3, 1, 2)
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class TorchIGC(nn.Module):
    def __init__(self, in_channels, L, M, stride=1):
        super().__init__()
        self.L, self.M = L, M
        self.primary = nn.Conv2d(
            in_channels, L * M, 3, stride, padding=1, groups=L, bias=False
        )
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

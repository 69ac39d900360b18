"""How each network family makes its convolutions.

The paper's networks share one skeleton and differ only in the convolution
that fills it: an IGC block, a regular (dense) convolution, or a grouped
convolution with summation fusion. A family object answers two questions for
a given output width: the main convolution, and the 1x1 projection used on a
residual shortcut where the width or resolution changes; and it counts the
weights of each (`conv_weights`, `projection_weights`), so that a network's
size is known without building it (the KerasTuner budget sweeps).
"""

import keras

from keras_igc.applications.conventions import release_padding
from keras_igc.complexity import igc_params
from keras_igc.layers import ChannelShuffle, GroupConv2D, IGCConv2D

HE_NORMAL = "he_normal"  # the release initialises every convolution He-normal


TRANSITIONS = ("paper", "release")


def grouped_conv3x3(x, width, strides, groups, unit, name):
    """A 3x3 group convolution padded as the release pads (`unit` names the
    padding layer)."""
    x, padding = release_padding(x, 3, strides, unit)
    return GroupConv2D(
        width,
        3,
        strides=strides,
        padding=padding,
        groups=groups,
        use_bias=False,
        kernel_initializer=HE_NORMAL,
        name=name,
    )(x)


class IGCConvs:
    """IGC blocks. Either `L` is fixed (M grows with width, the CIFAR nets and
    IGC-L4M32/L16M16) or `M` is fixed (L grows, IGC-L100M2).

    `transition="release"` builds the unit that widens a stage as the release's
    CIFAR `resnet_igc.py` does: its secondary convolution keeps the previous
    stage's M (M/2 partitions of 2L channels) and the permutation after it
    regroups by that M. The paper's +Ident. counts are this network's.
    """

    def __init__(
        self,
        primary_partitions=None,
        secondary_partitions=None,
        implementation="auto",
        transition="paper",
    ):
        if transition not in TRANSITIONS:
            raise ValueError(
                f"`transition` must be one of {TRANSITIONS}. Received: "
                f"transition={transition!r}."
            )
        self.primary_partitions = primary_partitions
        self.secondary_partitions = secondary_partitions
        self.implementation = implementation
        self.transition = transition

    def partitions(self, width):
        if self.primary_partitions is not None:
            L = self.primary_partitions
            if width % L:
                raise ValueError(
                    f"A stage of width {width} does not split into "
                    f"primary_partitions={L}: each stage width must be a "
                    f"multiple of L. Choose L among the divisors of {width}."
                )
            return L, width // L
        M = self.secondary_partitions
        if width % M:
            raise ValueError(
                f"A stage of width {width} does not split into "
                f"secondary_partitions={M}: each stage width must be a multiple "
                f"of M."
            )
        return width // M, M

    def conv(self, x, width, strides, name):
        L, M = self.partitions(width)
        widening = x.shape[-1] != width
        if self.transition == "release" and widening and self.primary_partitions:
            return self._release_transition(x, width, strides, name)
        x, padding = release_padding(x, 3, strides, name)
        return IGCConv2D(
            L,
            M,
            3,
            strides=strides,
            padding=padding,
            use_bias=False,
            implementation=self.implementation,
            kernel_initializer=HE_NORMAL,
            name=name,
        )(x)

    def _release_transition(self, x, width, strides, name):
        L = self.primary_partitions
        previous_m = x.shape[-1] // L
        x = grouped_conv3x3(x, width, strides, L, name, f"{name}_primary")
        x = ChannelShuffle(L, name=f"{name}_permutation")(x)
        x = GroupConv2D(
            width,
            1,
            groups=previous_m,
            use_bias=False,
            kernel_initializer=HE_NORMAL,
            name=f"{name}_secondary",
        )(x)
        return ChannelShuffle(previous_m, name=f"{name}_regroup")(x)

    def conv_weights(self, inputs, width):
        L, M = self.partitions(width)
        widening = inputs != width
        if self.transition == "release" and widening and self.primary_partitions:
            return 9 * (inputs // L) * width + width * width // (inputs // L)
        return igc_params(L, M, 3, input_channels=inputs)

    def projection_weights(self, inputs, width):
        L, _ = self.partitions(width)
        return inputs // L * width

    def projection(self, x, width, strides, name):
        L, _ = self.partitions(width)
        return GroupConv2D(
            width,
            1,
            strides=strides,
            groups=L,
            use_bias=False,
            kernel_initializer=HE_NORMAL,
            name=name,
        )(x)


class RegularConvs:
    """Dense 3x3 convolutions (the paper's RegConv baselines, ResNet-18)."""

    def conv(self, x, width, strides, name):
        x, padding = release_padding(x, 3, strides, name)
        return keras.layers.Conv2D(
            width,
            3,
            strides=strides,
            padding=padding,
            use_bias=False,
            kernel_initializer=HE_NORMAL,
            name=name,
        )(x)

    def conv_weights(self, inputs, width):
        return 9 * inputs * width

    def projection_weights(self, inputs, width):
        return inputs * width

    def projection(self, x, width, strides, name):
        return keras.layers.Conv2D(
            width,
            1,
            strides=strides,
            use_bias=False,
            kernel_initializer=HE_NORMAL,
            name=name,
        )(x)


class SumFusionConvs:
    """Grouped convolution with summation fusion (ResNeXt-style).

    `L` branches, each a 3x3 convolution on its slice of the channels followed
    by a 1x1 convolution back to the full width; the branches are summed.
    Summing per-branch 1x1 convolutions is one dense 1x1 convolution, so the
    block is a grouped 3x3 followed by a dense 1x1, with nothing between
    (like IGC, it is one linear block followed by BN and ReLU).
    """

    def __init__(self, primary_partitions):
        self.primary_partitions = primary_partitions

    def conv(self, x, width, strides, name):
        L = self.primary_partitions
        if width % L:
            raise ValueError(
                f"A stage of width {width} does not split into "
                f"primary_partitions={L} branches: each stage width must be a "
                f"multiple of L."
            )
        x = grouped_conv3x3(x, width, strides, L, name, f"{name}_branches")
        return keras.layers.Conv2D(
            width, 1, use_bias=False, kernel_initializer=HE_NORMAL, name=f"{name}_sum"
        )(x)

    def conv_weights(self, inputs, width):
        return 9 * (inputs // self.primary_partitions) * width + width * width

    def projection_weights(self, inputs, width):
        return inputs // self.primary_partitions * width

    def projection(self, x, width, strides, name):
        return GroupConv2D(
            width,
            1,
            strides=strides,
            groups=self.primary_partitions,
            use_bias=False,
            kernel_initializer=HE_NORMAL,
            name=name,
        )(x)

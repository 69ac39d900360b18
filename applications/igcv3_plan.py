"""IGCV3's layout: the paper's rows, pytorchcv's widths, and the units they
give (`plan`). The network (`igcv3.py`) and its weights (`weights/pytorchcv.py`)
both read it, so neither imports the other's module for it."""

import dataclasses

from keras_igc.validation import finite_float

# The IGCV3 paper's (expansion t, width c, blocks n, stride s) rows: MobileNetV2's
# widths with (1, 4, 6, 8, 6, 6, 1) blocks.
ROWS = (
    (1, 16, 1, 1), (6, 24, 4, 2), (6, 32, 6, 2), (6, 64, 8, 2),
    (6, 96, 6, 1), (6, 160, 6, 2), (6, 320, 1, 1),
)  # fmt: skip
STEM_WIDTH, LAST_WIDTH = 32, 1280
# Both pointwise group convolutions have two groups, and so does the shuffle.
GROUPS = 2
# pytorchcv's four published widths: alpha -> its model name.
WIDTHS = {1.0: "igcv3_w1", 0.75: "igcv3_w3d4", 0.5: "igcv3_wd2", 0.25: "igcv3_wd4"}


@dataclasses.dataclass(frozen=True)
class Unit:
    """One IGCV3 block: where it sits in pytorchcv's stages and in the
    release's rows, and its widths."""

    stage: int  # pytorchcv's stage (1-5): a new stage starts where s = 2
    unit: int  # 1-based within the stage
    row: int  # the release's row `seq-{row}` (0-6)
    block: int  # 0-based within the row (`-block{block}`)
    inputs: int
    hidden: int
    outputs: int
    strides: int

    @property
    def name(self):
        return f"stage{self.stage}_unit{self.unit}"

    @property
    def residual(self):
        return self.strides == 1 and self.inputs == self.outputs


def _make_even(width):
    return width + width % 2


def plan(alpha=1.0):
    """`(stem width, [Unit, ...], last width)` of IGCV3 at width `alpha`."""
    alpha = check_alpha(alpha)

    def scaled(width):
        return width if alpha == 1.0 else _make_even(int(width * alpha))

    stem = scaled(STEM_WIDTH)
    last = _make_even(int(LAST_WIDTH * alpha)) if alpha > 1.0 else LAST_WIDTH
    units, inputs, stage, unit = [], stem, 0, 0
    for row, (t, c, n, s) in enumerate(ROWS):
        for block in range(n):
            strides = s if block == 0 else 1
            if stage == 0 or (block == 0 and s == 2):
                stage, unit = stage + 1, 0
            unit += 1
            outputs = scaled(c)
            units.append(
                Unit(stage, unit, row, block, inputs, inputs * t, outputs, strides)
            )
            inputs = outputs
    return stem, units, last


def check_alpha(alpha):
    """`alpha` as a float, or a ValueError naming it and the smallest width."""
    alpha = finite_float(alpha, "alpha", positive=True)
    if int(min(c for _, c, _, _ in ROWS) * alpha) < 1:
        raise ValueError(
            f"IGCV3 needs alpha >= 1/16, so that its narrowest stage (16 "
            f"channels at 1.0x) keeps at least 2 channels. Received: "
            f"alpha={alpha!r}."
        )
    return alpha

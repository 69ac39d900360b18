"""Execution forms: every exact way a keras_igc layer can run, and which one
runs in which runtime.

This is the one place that decides it. Every form of a layer gives the same
outputs from the same weights; forms differ in speed and in what a converter
can read. Four kinds of layer have forms (`FORMS`):

- `"grouped_conv"` (`GroupConv2D`, any grouped `Conv2D` in an export, and the
  primary of an `IGCConv2D` in Keras): `"grouped"`, the backend's or
  runtime's own grouped convolution; `"dense"`, one block-diagonal dense
  kernel; `"depthwise"`, a depthwise convolution and a sum (narrow groups);
  `"split"`, one dense convolution per group on channel slices (wide groups).
- `"igc_block"` (`IGCConv2D`): `"grouped"`, the block as the paper draws it
  (grouped primary, permutation, grouped 1x1 secondary, inverse
  permutation; converters only); `"grouped_primary"`, a grouped primary, then
  the permutations and secondary as one dense 1x1; `"dense"`, the block's
  dense-equivalent kernel; `"igc"`, the primary as plain dense, depthwise or
  sliced convolutions (`Choice.primary`), then the 1x1.
- `"msgc"` (`MSGCConv2D` at inference): `"masked"` (masked copies, the
  training form), `"gather"` (the kept channels only), `"scaled_kernel"` (each
  sample's masks folded into its own kernel), `"auto"` (per call: gather
  while at most `Choice.gather_limit` channels are kept, else masked).
- `"shuffle"` (`ChannelShuffle`): `"gather"` (one take on the channel axis)
  or `"transpose"` (reshape, transpose, reshape: a plain copy on every
  backend, and one NCHW transpose in ONNX).

`choose(layer, runtime, overrides)` reads the rule of `RULES[runtime][kind]`.
The runtimes (`RUNTIMES`): `"keras"` (the Keras model on this machine's
backend and device), `"converter"` (an export for an unnamed runtime: the
Keras CPU rule without grouped kernels), and the three export runtimes
`"savedmodel"`, `"litert"` and `"onnx"`. Each rule names the benchmark results
file its thresholds were measured in (`Rule.source`); the figures are in
benchmarks/README.md, not here. A layer takes its form through its one public
method `set_execution_form(choice)`; `build` sets `choose(layer, "keras")` and
export sets its runtime's.

This module imports Keras only when a rule runs, so the command line reads
its choices (`FORMS`) without starting TensorFlow.
"""

import dataclasses
import functools

PATHS = ("grouped", "dense", "depthwise", "split")
# A layer's `implementation` argument: "auto" (the "keras" rule) or one path.
IMPLEMENTATIONS = ("auto",) + PATHS
FORMS = {
    "grouped_conv": PATHS,
    "igc_block": ("grouped", "grouped_primary", "dense", "igc"),
    "msgc": ("masked", "gather", "scaled_kernel", "auto"),
    "shuffle": ("gather", "transpose"),
}
# What an export may ask for instead of the rule: "auto" follows it;
# "auto_sparse" follows it but keeps every IGC block's own sparse weights
# (never the dense-equivalent kernel).
OVERRIDES = {
    "igc_block": ("auto", "auto_sparse", *FORMS["igc_block"]),
    "grouped_conv": IMPLEMENTATIONS,
    "msgc": ("auto", *FORMS["msgc"][:3]),
}
# What each form an export can ask for (`OVERRIDES`) does: the one
# description, read by the command line's help and `rules_table`
# (tests/test_forms.py checks that every one is described).
DESCRIPTIONS = {
    "igc_block": {
        "auto": "per format, the one its runtime measured fastest, with LiteRT "
        "and the SavedModel running M<=2 primaries as fewer, wider groups",
        "auto_sparse": "as auto, but never the dense-equivalent kernel",
        "grouped": "primary and secondary as the runtime's grouped "
        "convolutions, the permutations between",
        "grouped_primary": "a grouped primary, then one dense 1x1",
        "dense": "its dense-equivalent convolution, where a BatchNorm folds into it",
        "igc": "plain convolutions, then one 1x1",
    },
    "grouped_conv": {
        "auto": "per format, the one its runtime measured fastest, and in "
        "LiteRT and the SavedModel groups of one or two outputs merged into "
        "wider ones",
        "grouped": "the runtime's grouped convolution",
        "dense": "a block-diagonal dense kernel",
        "depthwise": "a depthwise convolution and a sum",
        "split": "one convolution per group",
    },
    "msgc": {
        "auto": "per call, the kept channels gathered while few are kept, else masked",
        "masked": "masked copies of the input, as in training",
        "gather": "the kept channels only",
        "scaled_kernel": "each sample's masks folded into its own kernel",
    },
}
EXPORT_RUNTIMES = ("savedmodel", "litert", "onnx")
RUNTIMES = ("keras", "converter", *EXPORT_RUNTIMES)

# A dense kernel up to this many weights (3x3, 48 -> 48 channels) runs on CPU
# as fast as any sparse form of it (results/bench-cpu.json), so its extra MACs
# cost nothing.
SMALL_DENSE_KERNEL = 3 * 3 * 48 * 48
# Where a grouped secondary pays for its two permutations: it saves
# L*L*M*(M-1) MACs per pixel over the dense 1x1 and the permutations move about
# 2*L*M values, so it wins once L*(M-1) reaches these (export-forms-cpu.json:
# ONNX from IGC-L4M8's M=16 stage on, LiteRT from IGC-L100M2's stage 2 on).
# In Keras the grouped secondary is one batched matmul between two transposes
# (`ops.secondary_batched`; secondary-forms-cpu.json: from IGC-L100M2's stage 2,
# IGC-L24M2's stage 3 and IGC-L4M8's stage 3 on, 0.47-0.88x the dense 1x1's
# time forward and backward; at L*(M-1) = 100, a tie).
GROUPED_SECONDARY_FROM = {"keras": 120, "litert": 200, "onnx": 48}
# Groups of one or two outputs run faster merged into consecutive groups of up
# to this many outputs, zeros between (export-grouped-cpu.json); ONNX Runtime
# does not gain. In Keras on TensorFlow's CPU (oneDNN's grouped kernel) more
# than two groups under 16 outputs do, forward and gradients alike: IGC-L24M2's
# and IGC-L100M2's primaries in 0.31-0.91x the time (`_KERAS_MERGED_NOTE`).
MERGED_GROUP_OUTPUTS = {"litert": 12, "savedmodel": 8, "keras": 16}

_FORMS_FILE = "benchmarks/results/export-forms-cpu.json"
_GROUPED_FILE = "benchmarks/results/export-grouped-cpu.json"
_MSGC_FILE = "benchmarks/results/msgc-forms-cpu.json"
_MSGC_EXPORTS_FILE = "benchmarks/results/msgc-exports-cpu.json"
_KERAS_FILE = "benchmarks/results/bench-cpu.json"
_KERAS_MERGED_NOTE = "benchmarks/NOTES.md, 'Merged groups in Keras'"


@dataclasses.dataclass(frozen=True)
class Geometry:
    """What a rule reads of a layer. For a grouped convolution or an IGC
    block's primary: `groups` (L), `group_inputs`, `group_outputs` (M);
    for an MSGC layer: `heads`, and `group_inputs` its input channels."""

    groups: int = 1
    group_inputs: int = 1
    group_outputs: int = 1
    kernel_size: tuple = (1, 1)
    strides: tuple = (1, 1)
    dtype: str = "float32"
    heads: int = 1

    @property
    def dense_weights(self):
        """Weights of the block-diagonal dense kernel of the same convolution."""
        inputs, outputs = (
            self.groups * self.group_inputs,
            self.groups * self.group_outputs,
        )
        return self.kernel_size[0] * self.kernel_size[1] * inputs * outputs


@dataclasses.dataclass(frozen=True)
class Choice:
    """A layer's form in a runtime, and why.

    Attributes:
        kind, form: the layer's kind and its form (`FORMS[kind]`).
        runtime: one of `RUNTIMES`; any but `"keras"` emits graph ops a
            converter reads (`for_converter`).
        why: the rule's reason, or the override that set it.
        source: the benchmark results file the rule was measured in.
        primary: an IGC block's primary path (`PATHS`; `"dense"` for the
            whole block's dense-equivalent kernel).
        merge: consecutive groups that run as one (1: none), with zeros
            between (`ops.merged_groups_kernel`); a grouped form only.
        gather_limit: the MSGC `"auto"` form's most kept channels to gather.
        secondary: in Keras, how an IGC block's grouped primary is followed:
            `"dense"`, one block-diagonal 1x1 with both permutations in it,
            or `"grouped"`, M products of L x L between two transposes.
        inference_secondary: in Keras, the secondary at inference where it
            differs from training's: `"conv"`, the block-diagonal 1x1 as a
            convolution op (on TensorFlow, Grappler fuses the BatchNorm and
            ReLU after it into the convolution); None: as in training.
    """

    kind: str
    form: str
    runtime: str
    why: str
    source: str | None = None
    primary: str | None = None
    merge: int = 1
    gather_limit: int = 0
    secondary: str | None = None
    inference_secondary: str | None = None

    @property
    def for_converter(self):
        return self.runtime != "keras"

    def as_dict(self):
        entry = {"form": self.form, "why": self.why}
        return entry if self.source is None else {**entry, "source": self.source}


@dataclasses.dataclass(frozen=True)
class Rule:
    runtime: str
    kind: str
    decide: object  # Geometry -> (form, why) or (form, why, {field: value})
    source: str | None

    @property
    def summary(self):
        return (self.decide.__doc__ or "").strip().splitlines()[0]


RULES = {runtime: {} for runtime in RUNTIMES}


def rule(runtimes, kind, source=None):
    """Register the decorated function as the rule of `kind` in `runtimes`."""

    def register(decide):
        for runtime in (runtimes,) if isinstance(runtimes, str) else runtimes:
            RULES[runtime][kind] = Rule(runtime, kind, decide, source)
        return decide

    return register


def choose(layer, runtime="keras", overrides=None):
    """The `Choice` of `layer` in `runtime`.

    Args:
        layer: an `IGCConv2D`, `GroupConv2D` or grouped `Conv2D`,
            `MSGCConv2D` or `ChannelShuffle`, built.
        runtime: one of `RUNTIMES`.
        overrides: `{kind: form}` to use instead of the rule (`OVERRIDES`;
            `"auto"` follows it). In `"keras"` (and for an MSGC layer in
            every runtime), a layer's own `implementation` other than
            `"auto"` overrides the rule too.
    """
    if runtime not in RUNTIMES:
        raise ValueError(
            f"`runtime` must be one of {RUNTIMES}. Received: runtime={runtime!r}."
        )
    kind, geometry, own = describe(layer)
    wanted = check_override(kind, dict(overrides or {}).get(kind, "auto"))
    if wanted not in ("auto", "auto_sparse"):
        return forced(kind, wanted, runtime, geometry)
    if own != "auto" and (runtime == "keras" or kind == "msgc"):
        return _own(kind, own, runtime, geometry)
    choice = decide(kind, runtime, geometry)
    if wanted == "auto_sparse" and choice.form == "dense":
        return sparse(choice, geometry, "block_form='auto_sparse'")
    return choice


def decide(kind, runtime, geometry):
    """The rule's `Choice` for a layer of `kind` and `geometry` in `runtime`."""
    rule_ = RULES[runtime][kind]
    form, why, *extra = rule_.decide(geometry)
    choice = Choice(
        kind, form, runtime, why, rule_.source, **(extra[0] if extra else {})
    )
    if kind == "igc_block" and choice.primary is None:
        choice = dataclasses.replace(
            choice, primary="dense" if form == "dense" else "grouped"
        )
    return _merged(choice, geometry)


def forced(kind, form, runtime, geometry, why=None):
    """The `Choice` of a form named explicitly (never merged: emitted as named)."""
    why = why or f"{_argument(kind)}={form!r}"
    extra = {}
    if kind == "igc_block":
        extra["primary"] = {
            "dense": "dense",
            "igc": select_path(geometry, for_converter=True),
        }.get(form, "grouped")
    elif kind == "msgc" and form == "gather":
        extra["gather_limit"] = geometry.group_inputs
    return Choice(kind, form, runtime, why, **extra)


def sparse(choice, geometry, reason):
    """An IGC block's `choice` with the dense form replaced by `"igc"`, and
    `reason` added to its why (the block keeps its own weights)."""
    if choice.form != "dense":
        return choice
    igc = forced("igc_block", "igc", choice.runtime, geometry)
    return dataclasses.replace(
        igc, why=f"{choice.why}; kept an IGC block: {reason}", source=choice.source
    )


def _own(kind, own, runtime, geometry):
    """The `Choice` a layer's own `implementation` argument names."""
    why = f"implementation={own!r}"
    if kind == "msgc" and runtime not in ("keras", "savedmodel"):
        return Choice(kind, "masked", runtime, f"{why}; converters run it masked")
    if kind == "igc_block":
        form = {"dense": "dense", "grouped": "grouped_primary"}.get(own, "igc")
        secondary = None if own == "dense" else _keras_secondary(geometry)[0]
        return Choice(kind, form, runtime, why, primary=own, secondary=secondary)
    return forced(kind, own, runtime, geometry, why)


# The export argument that overrides each kind's rule (`export.prepare`).
_ARGUMENTS = {"igc_block": "block_form", "grouped_conv": "grouped_conv_form"}


def _argument(kind):
    """How a message names the override of `kind`'s form."""
    return _ARGUMENTS.get(kind, f"the {kind!r} form")


def check_kind(choice, kind, layer):
    """`choice` if it is a form of `kind`, else a ValueError naming `layer`."""
    if choice.kind != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r} takes {article} {kind!r} form. "
            f"Received a {choice.kind!r} form: {choice}."
        )
    return choice


def check_override(kind, value):
    """`value` if an export may ask for it for `kind`, else a ValueError."""
    allowed = OVERRIDES.get(kind, ("auto",))
    if value not in allowed:
        if kind not in FORMS:
            raise ValueError(
                f"Unknown kind of layer {kind!r}: forms exist for {sorted(FORMS)}."
            )
        name = _argument(kind)
        raise ValueError(
            f"`{name}` must be one of {allowed}. Received: {name}={value!r}."
            if kind in _ARGUMENTS
            else f"{name} must be one of {allowed}. Received: {value!r}."
        )
    return value


def describe(layer):
    """`(kind, Geometry, implementation)` of a layer that has forms.

    keras_igc's layers say it themselves (`execution_geometry()`: forms
    knows no layer class); a Keras `Conv2D` (grouped or not, and so
    `GroupConv2D`) is read here.
    """
    import keras

    if hasattr(layer, "execution_geometry"):
        return layer.execution_geometry()
    if isinstance(layer, keras.layers.Conv2D):
        dtype = getattr(layer, "compute_dtype", "float32")
        geometry = Geometry(
            layer.groups, layer.kernel.shape[2], layer.filters // layer.groups,
            layer.kernel_size, layer.strides, dtype,
        )  # fmt: skip
        return "grouped_conv", geometry, getattr(layer, "implementation", "auto")
    raise TypeError(
        f"{type(layer).__name__} {layer.name!r} has no execution forms; forms "
        f"are for IGCConv2D, GroupConv2D (or a grouped Conv2D), MSGCConv2D and "
        f"ChannelShuffle."
    )


def _merged(choice, geometry):
    """`choice` with `merge_factor`'s merge of narrow groups where its runtime
    gains from it, and its reason added."""
    grouped = choice.form in ("grouped", "grouped_primary") and choice.kind in (
        "igc_block", "grouped_conv",
    )  # fmt: skip
    factor = merge_factor(choice.runtime, geometry) if grouped else 1
    if factor == 1:
        return choice
    groups, outputs = geometry.groups, geometry.group_outputs
    source = _KERAS_MERGED_NOTE if choice.runtime == "keras" else _GROUPED_FILE
    return dataclasses.replace(
        choice,
        merge=factor,
        why=f"{choice.why}; as {groups // factor} groups of {factor} "
        f"({factor * outputs} outputs each, zeros between): {choice.runtime} "
        f"runs groups of {outputs} outputs slowly ({source})",
    )


def merge_factor(runtime, geometry):
    """How many consecutive groups run as one in `runtime` (1: none): in the
    export runtimes groups of one or two outputs; in Keras, on TensorFlow's
    CPU kernel only, more than two groups of under
    `MERGED_GROUP_OUTPUTS["keras"]` outputs."""
    widest = MERGED_GROUP_OUTPUTS.get(runtime)
    g = geometry
    if widest is None or g.group_inputs * g.group_outputs == 1:
        return 1
    if runtime == "keras":
        # Two groups (IGCV3's pointwise layers) would merge into a dense
        # convolution: not measured faster (NOTES.md), left as they are.
        if g.groups <= 2 or not _tensorflow_cpu_grouped_kernel(g.dtype):
            return 1
    elif g.group_outputs > 2:
        return 1
    widest_factor = max(1, widest // g.group_outputs)
    return max(r for r in range(1, widest_factor + 1) if g.groups % r == 0)


def select_path(geometry, for_converter=False):
    """The fastest exact path of a grouped convolution on this backend and
    device (a path of `PATHS`).

    `"grouped"` wherever the backend has a fast grouped kernel: PyTorch
    (oneDNN, cuDNN), any accelerator, and TensorFlow on CPU with oneDNN in
    float32 or bfloat16 (`tensorflow_grouped_kernel`). Otherwise, and always
    `for_converter` (the exporting machine's kernels say nothing of the
    serving runtime's): a 1x1 or small convolution as one dense kernel,
    narrow groups as a depthwise convolution, wide groups as dense
    convolutions on slices. For an IGC block, the primary's geometry: its
    dense form is the whole block's dense-equivalent kernel.
    """
    import keras

    g = geometry
    backend = keras.backend.backend()
    if not for_converter and (
        backend == "torch"
        or has_accelerator()
        or (backend == "tensorflow" and tensorflow_grouped_kernel(g.dtype))
    ):
        return "grouped"
    if tuple(g.kernel_size) == (1, 1) or g.dense_weights <= SMALL_DENSE_KERNEL:
        return "dense"
    if g.group_inputs * g.group_outputs <= 16 and g.strides[0] == g.strides[1]:
        return "depthwise"
    return "split"


# The rules, one per runtime and kind.


@rule("keras", "grouped_conv", source=_KERAS_FILE)
def _keras_grouped(g):
    """The backend's grouped kernel where it is fast, else dense, depthwise or split."""
    return select_path(g), "the Keras rule (forms.select_path)"


@rule("keras", "igc_block", source=_KERAS_FILE)
def _keras_block(g):
    """The primary's path by the Keras rule (dense: the whole block's kernel)."""
    import keras

    path = select_path(g)
    why = "the Keras rule on the primary (forms.select_path)"
    if path == "dense":
        return "dense", why
    form = "grouped_primary" if path == "grouped" else "igc"
    secondary, secondary_why = _keras_secondary(g)
    extra = {"primary": path, "secondary": secondary}
    if secondary == "dense" and keras.backend.backend() == "tensorflow":
        # The same product as a convolution op, into which Grappler fuses the
        # BatchNorm and ReLU: IGCNet38's inference in 0.82-0.93x the time
        # (benchmarks/NOTES.md, "The secondary as a convolution at inference").
        extra["inference_secondary"] = "conv"
        secondary_why += "; at inference a 1x1 convolution (BatchNorm fused in)"
    return form, f"{why}; {secondary_why}", extra


def _keras_secondary(g):
    """`"grouped"` (M products of L x L) from a wide L*(M-1), else `"dense"`
    (one block-diagonal 1x1), and why."""
    threshold, width = GROUPED_SECONDARY_FROM["keras"], g.groups * (g.group_outputs - 1)
    if width >= threshold:
        return "grouped", f"L*(M-1) = {width} >= {threshold}: a grouped secondary"
    return "dense", f"L*(M-1) = {width} < {threshold}: a dense secondary"


@rule("converter", "grouped_conv", source=_KERAS_FILE)
def _converter_grouped(g):
    """The Keras CPU rule without grouped kernels."""
    path = select_path(g, for_converter=True)
    return path, "the Keras CPU rule (forms.select_path) without grouped kernels"


@rule("converter", "igc_block", source=_KERAS_FILE)
def _converter_block(g):
    """Dense where the dense kernel is small, else plain convolutions and a 1x1."""
    path = select_path(g, for_converter=True)
    why = "the Keras CPU rule (forms.select_path) without grouped kernels"
    if path == "dense":
        return "dense", why
    return "igc", why, {"primary": path}


@rule("savedmodel", "grouped_conv", source=_GROUPED_FILE)
def _savedmodel_grouped(g):
    """TensorFlow's grouped Conv2D (oneDNN, cuDNN), as the Keras model runs it."""
    return "grouped", (
        "savedmodel: TensorFlow's grouped Conv2D (oneDNN on x86 CPUs, cuDNN on "
        "GPUs), the Keras model's own path (forms.select_path)"
    )


@rule("savedmodel", "igc_block", source=_FORMS_FILE)
def _savedmodel_block(g):
    """A grouped primary and one 1x1, as the Keras model runs it."""
    return "grouped_primary", (
        "savedmodel: TensorFlow's grouped Conv2D (oneDNN on x86 CPUs, cuDNN on "
        "GPUs) and one 1x1, the Keras model's own path (forms.select_path)"
    )


def _small_dense(runtime, g):
    if g.groups <= 4 and g.dense_weights <= SMALL_DENSE_KERNEL:
        return (
            f"{runtime}: {g.groups} groups with a small dense kernel "
            f"({g.dense_weights} weights) run fastest as one dense convolution"
        )
    return None


def _converted_grouped(runtime):
    def decide(g):
        """Dense for up to 4 groups and a small kernel, else grouped."""
        why = _small_dense(runtime, g)
        if why:
            return "dense", why
        return "grouped", (
            f"{runtime}: the runtime's grouped convolution ({g.groups} groups), "
            f"{g.groups}x fewer MACs than the dense kernel"
        )

    return decide


def _converted_block(runtime):
    def decide(g):
        """Dense if small; grouped from a wide L*(M-1); else grouped_primary."""
        why = _small_dense(runtime, g)
        if why:
            return "dense", why
        threshold, width = (
            GROUPED_SECONDARY_FROM[runtime],
            g.groups * (g.group_outputs - 1),
        )
        if width >= threshold:
            return "grouped", (
                f"{runtime}: L*(M-1) = {width} >= {threshold}: the grouped "
                f"secondary saves more than its permutations cost"
            )
        return "grouped_primary", (
            f"{runtime}: L*(M-1) = {width} < {threshold}: a grouped primary, "
            f"then one dense 1x1 (no permutations)"
        )

    return decide


for _runtime in ("litert", "onnx"):
    rule(_runtime, "grouped_conv", _GROUPED_FILE)(_converted_grouped(_runtime))
    rule(_runtime, "igc_block", _FORMS_FILE)(_converted_block(_runtime))


@rule("keras", "msgc", source=_MSGC_FILE)
def _keras_msgc(g):
    """Heads: scaled_kernel; one spatial head: auto (gather <= 60%); else masked."""
    import keras

    if has_accelerator():
        return "masked", "not measured on accelerators: the masked form"
    if g.heads > 1:
        return "scaled_kernel", (
            "several heads: each sample's masks folded into its kernel, no "
            "per-head copies"
        )
    if tuple(g.kernel_size) != (1, 1) and keras.backend.backend() != "jax":
        return (
            "auto",
            (
                "one head, spatial kernel: gathered where the batch keeps at most "
                "60% of the channels"
            ),
            {"gather_limit": int(0.6 * g.group_inputs)},
        )
    return "masked", "one 1x1 head (or JAX's static shapes): every form cost the same"


@rule("savedmodel", "msgc", source=_MSGC_FILE)
def _savedmodel_msgc(g):
    """TensorFlow serves it: the form Keras takes on this machine."""
    form, why, *extra = _keras_msgc(g)
    return form, f"savedmodel: TensorFlow runs the Keras form ({why})", *extra


def _converted_msgc(runtime):
    def decide(g):
        """Pointwise several-head layers: scaled_kernel; else masked."""
        if tuple(g.kernel_size) == (1, 1) and g.heads > 1:
            return "scaled_kernel", (
                f"{runtime}: each sample's masks in its own 1x1 kernel, one "
                f"batched matrix product"
            )
        return "masked", (
            f"{runtime}: the gathered form's shapes follow the gates and a "
            f"spatial per-sample kernel needs a batch of one, which the "
            f"converters cannot express; the masked form"
        )

    return decide


for _runtime in ("converter", "litert", "onnx"):
    rule(_runtime, "msgc", _MSGC_EXPORTS_FILE)(_converted_msgc(_runtime))


@rule("keras", "shuffle", source="benchmarks/results/shuffle-forms-cpu.json")
def _keras_shuffle(g):
    """Reshape, transpose, reshape on every backend."""
    return "transpose", (
        "reshape-transpose-reshape: a copy, where a gather on the channel axis "
        "is 2.5-5x slower forward (TensorFlow, PyTorch) and its gradient a "
        "scatter (JAX: 6-10x slower)"
    )


@rule(
    ("converter", *EXPORT_RUNTIMES),
    "shuffle",
    source="benchmarks/results/export-igcv3-cpu.json",
)
def _converted_shuffle(g):
    """Reshape, transpose, reshape: ONNX export makes it one NCHW transpose."""
    return "transpose", (
        "reshape-transpose-reshape, which ONNX export turns into one NCHW "
        "transpose (a gather on the channel axis needs two layout transposes)"
    )


def rules_table():
    """The rule table as Markdown (runtime, kind, rule, measured in), then
    what each form an export can ask for does."""
    lines = ["| runtime | layer | rule | measured in |", "|---|---|---|---|"]
    for runtime, rules in RULES.items():
        for kind, rule_ in rules.items():
            source = f"`{rule_.source}`" if rule_.source else "-"
            lines.append(f"| {runtime} | {kind} | {rule_.summary} | {source} |")
    lines += ["", "| layer | form | what it runs |", "|---|---|---|"]
    for kind, described in DESCRIPTIONS.items():
        lines += [f"| {kind} | {form} | {text} |" for form, text in described.items()]
    return "\n".join(lines)


def tensorflow_grouped_kernel(dtype):
    """Whether TensorFlow computes a grouped convolution in `dtype`, and its
    gradients, with a fast kernel of its own: cuDNN on a GPU, oneDNN on CPU
    for float32 and bfloat16. (Without oneDNN, or in float16, its CPU kernel
    is slow and has no gradient.)"""
    import keras

    from keras_igc import keras_internals

    dtype = keras.backend.standardize_dtype(dtype)
    if has_accelerator():
        return True
    return keras_internals.tensorflow_onednn() and dtype in ("float32", "bfloat16")


def _tensorflow_cpu_grouped_kernel(dtype):
    """Whether Keras runs grouped convolutions through oneDNN's CPU kernel,
    the one measured to gain from merged groups."""
    import keras

    return (
        keras.backend.backend() == "tensorflow"
        and not has_accelerator()
        and tensorflow_grouped_kernel(dtype)
    )


def has_accelerator():
    """Whether the current Keras backend computes on a GPU or TPU."""
    import keras

    return _has_accelerator(keras.backend.backend())


# Per backend, once: the devices are fixed once the runtime has started (and
# asking starts it), and the grouped path asks on every eager call.
@functools.cache
def _has_accelerator(backend):
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    return False

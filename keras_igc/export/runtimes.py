"""The runtimes an export writes for: one adapter module each, registered
in `ADAPTERS`. `artifacts`, `check`, `quantize`'s report, `predict` and the
CLI read them from here; adding a runtime is its adapter file, one line
below and its rules in `keras_igc.forms`.

Every adapter module defines:

- `NAME`: the runtime's name (`forms.EXPORT_RUNTIMES` holds its forms rules);
- `FILE`: the artifact's name in an export folder; `SUFFIX`: the file
  ending `predict` knows it by (None: not a file predict reads);
- `write(model, path, stage)`: write the runtime's clone of the model, and
  return the ops that needed a fallback (`stage` is `artifacts.Stage`: the
  other runtimes' staged files, e.g. a SavedModel to convert);
- `runner(path, probes=())`: a function that loads the file and returns its
  `predict` (with `probes`, inner tensors too, as `(output, [values])`);
- `INT8_FILE`: the 8-bit file's name, or None for a runtime without one.
  With one: `INT8_RULE` (a `forms.Rule` of kind "int8" saying which
  convolutions run in int8), `write_int8(stage, path, scheme, images,
  int8_io)` returning `{node: why}` of convolutions kept float (None for a
  rule that keeps none; for a quantization-aware model, `stage.rounded`
  holds the clone with its learned ranges, converted without calibration),
  `float_ops(path)`, `gate_logits(path)` (the types of the values the MSGC
  gates compare), `tensor_names(path)` and `io_shapes(path)`.
"""

from keras_igc.export import litert, onnx, savedmodel

ADAPTERS = (savedmodel, litert, onnx)
RUNTIMES = {adapter.NAME: adapter for adapter in ADAPTERS}
# The runtimes that write an 8-bit file.
INT8_RUNTIMES = {name: a for name, a in RUNTIMES.items() if a.INT8_FILE}


def get(name):
    """The adapter of runtime `name`, else a ValueError naming the choices."""
    if name not in RUNTIMES:
        raise ValueError(
            f"Unknown export format {name!r}. Choose from {list(RUNTIMES)}."
        )
    return RUNTIMES[name]


def for_file(path):
    """The adapter whose files end like `path` (`.tflite`, `.onnx`), or None."""
    return next(
        (a for a in ADAPTERS if a.SUFFIX and str(path).endswith(a.SUFFIX)), None
    )


def table():
    """The runtimes as Markdown: name, artifact, 8-bit artifact."""
    lines = ["| runtime (export format) | artifact | 8-bit artifact |", "|---|---|---|"]
    lines += [
        f"| {name} | `{a.FILE}` | {f'`{a.INT8_FILE}`' if a.INT8_FILE else '-'} |"
        for name, a in RUNTIMES.items()
    ]
    return "\n".join(lines)


def int8_form(runtime, geometry):
    """`(form, why)`: `"int8"`, or `"float"` where `runtime`'s integer kernel
    for a convolution of `geometry` measured slower (its `INT8_RULE`)."""
    if runtime not in INT8_RUNTIMES:
        raise ValueError(
            f"No 8-bit files for runtime {runtime!r}; they are written for "
            f"{sorted(INT8_RUNTIMES)}."
        )
    return INT8_RUNTIMES[runtime].INT8_RULE.decide(geometry)


def int8_rules_table():
    """Each runtime's `INT8_RULE` as Markdown: runtime, rule, measured in."""
    lines = ["| runtime | 8-bit convolutions | measured in |", "|---|---|---|"]
    lines += [
        f"| {name} | {a.INT8_RULE.summary} | `{a.INT8_RULE.source}` |"
        for name, a in INT8_RUNTIMES.items()
    ]
    return "\n".join(lines)

"""Argument checks shared by the layers, builders and training code."""


def positive_int(value, name, owner=None):
    """`value` if it is a positive integer (a bool is not), else a ValueError
    that names the argument and the value received."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        prefix = f"{owner} " if owner else ""
        raise ValueError(
            f"{prefix}`{name}` must be a positive integer. Received: {name}={value!r}."
        )
    return value


def finite_float(value, name, owner=None, *, positive=False):
    """`value` as a float if it is a finite real number, non-negative (or
    positive with `positive=True`), else a ValueError naming the argument."""
    import math
    import numbers

    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        prefix = f"{owner} " if owner else ""
        kind = "positive" if positive else "non-negative"
        raise ValueError(
            f"{prefix}`{name}` must be a finite {kind} number. Received: "
            f"{name}={value!r}."
        )
    return float(value)

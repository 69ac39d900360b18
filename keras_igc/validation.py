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

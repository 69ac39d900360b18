"""`KERAS_IGC_QUICK`: the one setting that shortens runs, for smoke tests.

With `KERAS_IGC_QUICK=1` in the environment, every training run (`train`,
`tune`, the tutorials) takes at most `EPOCHS` epochs of at most `STEPS`
steps, a sweep at most `TRIALS` trials, and every example count
(calibration, held-out checks) is at most `EXAMPLES`. Nothing else
changes: the same code, files and commands. The test that runs the README
and docs/ sets it, so that every block runs in minutes; the numbers such
runs give mean nothing. Unset (or `0`), nothing is shortened.

Example:

>>> from keras_igc import quick
>>> quick.epochs(20, environ={"KERAS_IGC_QUICK": "1"})
1
>>> quick.epochs(20, environ={})
20
"""

import os

VARIABLE = "KERAS_IGC_QUICK"
EPOCHS = 1
STEPS = 8
EXAMPLES = 16
TRIALS = 2


def enabled(environ=None):
    """Whether `KERAS_IGC_QUICK` is set to something other than 0 or empty."""
    value = (os.environ if environ is None else environ).get(VARIABLE, "")
    return value.strip() not in ("", "0")


def _cap(value, limit, environ):
    if not enabled(environ):
        return value
    return limit if value is None else min(value, limit)


def epochs(value, environ=None):
    """`value` epochs, at most `EPOCHS` under the setting."""
    return _cap(value, EPOCHS, environ)


def steps(value, environ=None):
    """`value` steps per epoch (None: the whole split), at most `STEPS`
    under the setting."""
    return _cap(value, STEPS, environ)


def examples(value, environ=None):
    """`value` examples, at most `EXAMPLES` under the setting."""
    return _cap(value, EXAMPLES, environ)


def trials(value, environ=None):
    """`value` sweep trials (None: one per configuration), at most `TRIALS`
    under the setting."""
    return _cap(value, TRIALS, environ)

"""IGC networks as `keras.applications`-style builders (`keras_igc.applications`).

The builders land here with the applications work; this package is installed
as `keras_igc.applications` (see `package_dir` in setup.cfg).
"""

"""`python -m keras_igc.cli`: the `keras-igc` command."""

import sys

from keras_igc.cli import main

sys.exit(main())

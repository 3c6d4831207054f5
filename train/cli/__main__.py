"""`python -m train.cli`: the `autodidact` command line."""

import sys

from train.cli import main

sys.exit(main())

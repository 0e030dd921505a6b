"""`python -m pagerduty_sim`."""

import sys

from .cli import main

sys.exit(main())

"""`python -m switch.cli ...` is the `payswitch` command."""

import sys

from switch.cli.main import main

sys.exit(main())

"""`python -m mediasvc` runs the CLI."""

import sys

from mediasvc.cli import main

sys.exit(main())

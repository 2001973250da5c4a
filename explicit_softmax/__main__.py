"""``python -m explicit_softmax``: the ``explicit-softmax`` command line (see ``cli``)."""

from __future__ import annotations

import sys

from explicit_softmax.cli import main

if __name__ == "__main__":
  sys.exit(main())

"""``python -m kvstore`` and the ``ckite-kvstore`` console script."""
from __future__ import annotations

import sys

from kvstore.cli import run


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()

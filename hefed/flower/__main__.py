"""``python -m hefed.flower write-app DIR``: write the hefed Flower app project for ``flwr run DIR ...``."""

from __future__ import annotations

import sys

from ..errors import HefedError, UsageError
from .project import write_app

USAGE = "usage: python -m hefed.flower write-app DIR [--force]"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    force = "--force" in args
    args = [a for a in args if a != "--force"]
    if len(args) != 2 or args[0] != "write-app":
        print(USAGE, file=sys.stderr)
        return 2
    try:
        directory = write_app(args[1], force=force)
    except HefedError as exc:
        print(f"hefed: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    print(f"wrote {directory / 'pyproject.toml'}; submit it with: flwr run {directory} CONNECTION --run-config ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())

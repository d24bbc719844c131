"""User-facing errors: one clear line and a non-zero exit instead of a traceback."""

import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake the user can fix (bad params, missing file, no network); never a bug."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(), turning a UserError into one line on stderr and exit status 2."""
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

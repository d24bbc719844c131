"""User-facing errors: one clear line and a non-zero exit instead of a traceback."""

import signal
import sys
import threading
from collections.abc import Callable

SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class UserError(Exception):
    """A mistake the user can fix (bad params, missing file, no network); never a bug."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(), turning a UserError into one line on stderr and exit status 2.

    SIGTERM (dvc's and most schedulers' stop) unwinds like an exception, so every `finally` runs and
    atomic_path removes its temporary file; Python's default would die on the spot and leave it.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main_thread else None
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signal_number: int, frame: object) -> None:
    """Leave through SystemExit: cleanup runs on the way out."""
    raise SystemExit(SIGTERM_EXIT_STATUS)

"""User-facing errors and the wrapper that turns them into a message and an exit code."""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable
from typing import NoReturn

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix (bad input, missing model, unreachable server).

    Printed as one clear line, never as a traceback.
    """


def main_guard(main: Callable[..., int | None]) -> Callable[..., int]:
    """Run an entry point; report a UserError (or an MLflow error) as a message and exit 2."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as error:  # noqa: BLE001 - only to classify MLflow's own errors
            if type(error).__name__ == "MlflowException":
                print(f"error: {error}", file=sys.stderr)
                return EXIT_USER_ERROR
            raise

    return wrapped


def exit_process(code: int) -> NoReturn:
    """End an entry point's process with ``code``.

    The interpreter's last garbage collections walk every object that MLflow, Spark and pandas
    made, to free memory the operating system takes back anyway; frozen first, they are skipped.
    ``atexit`` handlers, and the flushing
    and closing of files, still run; only cyclic garbage is left to the operating system.
    """
    gc.freeze()
    sys.exit(code)

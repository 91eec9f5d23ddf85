"""What every pipeline's `main()` shares: logging set up once, expected failures as one line."""
from __future__ import annotations

import logging
import sys

from encoders.files import WriteFailed, write_failure

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def run_cli(work, errors: tuple[type[BaseException], ...] = (ValueError,),
            flags: dict[type[BaseException], str] | None = None) -> int:
    """Run `work()`: an expected failure (one of `errors`, whose message states what is wrong)
    becomes one `error: ...` line on stderr and exit code 2, never a traceback. `flags` maps
    a library error type to what to do in this CLI's terms (which flag to change); the first
    type the error is an instance of adds its text to the line.

    A full or failing disk (`encoders.files.WriteFailed`, or an OSError with its errno that a
    writer let through) is one line too, exit code 1: what was there before is intact, and the
    same command completes once there is space."""
    setup_logging()
    try:
        work()
    except errors as e:
        hint = next((h for t, h in (flags or {}).items() if isinstance(e, t)), None)
        print(f"error: {e}" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 2
    except OSError as e:
        failed = e if isinstance(e, WriteFailed) else write_failure(e, e.filename or ".", None)
        if failed is None:
            raise
        print(f"error: {failed}; free some space there and run the same command again", file=sys.stderr)
        return 1
    return 0

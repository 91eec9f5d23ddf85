"""What every pipeline's `main()` shares: logging set up once, expected failures as one line."""
from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def run_cli(work, errors: tuple[type[BaseException], ...] = (ValueError,)) -> int:
    """Run `work()`: an expected failure (one of `errors`, whose message says what to do)
    becomes one `error: ...` line on stderr and exit code 2, never a traceback."""
    setup_logging()
    try:
        work()
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0

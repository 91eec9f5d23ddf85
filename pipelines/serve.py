"""Serve the search page: `streamlit run app.py` on 127.0.0.1 (what `selfsup-app` runs).

    python -m pipelines.serve [--index INDEX_DIR] [--port 8501]
    python -m pipelines.serve --index INDEX_DIR --share [--address 0.0.0.0]   # for other machines

The server settings of `.streamlit/config.toml` are passed as flags, so the page binds
127.0.0.1 and caps uploads at 20 MB from whatever folder it is started. `--share` serves other
machines: the page then shows only INDEX_DIR (its sidebar cannot open another folder and an
address asking for one is refused); uploads keep their cap and XSRF protection stays on. Put it
behind a reverse proxy with a password (docs/app.md, "Serving to others").
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"  # the repository's, or the installed copy beside pipelines/
SERVER_FLAGS = ["--server.headless", "true", "--server.maxUploadSize", "20", "--server.enableXsrfProtection", "true",
                "--browser.gatherUsageStats", "false"]


def streamlit_command(index: str | None, port: int, share: bool = False, address: str | None = None) -> list[str]:
    address = address or ("0.0.0.0" if share else "127.0.0.1")
    page_args = (["--index", str(Path(index).resolve())] if index else []) + (["--share"] if share else [])
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", address, *SERVER_FLAGS,
            "--server.port", str(port), "--", *page_args]


def serve(index: str | None, port: int, share: bool = False, address: str | None = None) -> int:
    """Run the search page in the foreground until Ctrl-C."""
    host = address or ("0.0.0.0" if share else "127.0.0.1")
    shared = " (shared: this index only; every address of this machine)" if host == "0.0.0.0" else ""
    print(f"\nsearch page: http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}{shared}  (Ctrl-C to stop)",
          flush=True)
    try:
        return subprocess.call(streamlit_command(index, port, share, address))
    except KeyboardInterrupt:
        return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="selfsup-app", description=__doc__.split("\n\n")[0])
    p.add_argument("--index", default=None, help="index folder (default: indexes/demo under the current folder)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--share", action="store_true",
                   help="serve other machines: this index only, no other folder can be opened from the page")
    p.add_argument("--address", default=None, help="address to listen on (default 127.0.0.1; 0.0.0.0 with --share)")
    args = p.parse_args(argv)
    if args.share and not args.index:
        p.error("--share needs --index: the one index the page serves")
    return serve(args.index, args.port, args.share, args.address)


if __name__ == "__main__":
    sys.exit(main())

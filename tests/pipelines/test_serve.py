"""`selfsup-app` / `python -m pipelines.serve`: the streamlit command it runs, locally and shared."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import serve


def after(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_local_by_default_with_the_upload_cap_and_xsrf_protection():
    cmd = serve.streamlit_command("idx", 8600)
    assert after(cmd, "--server.address") == "127.0.0.1" and after(cmd, "--server.port") == "8600"
    assert after(cmd, "--server.maxUploadSize") == "20" and after(cmd, "--server.enableXsrfProtection") == "true"
    assert cmd[cmd.index("--") + 1:] == ["--index", str(Path("idx").resolve())]


@pytest.mark.parametrize("address, bound", [(None, "0.0.0.0"), ("192.168.1.5", "192.168.1.5")])
def test_shared_listens_beyond_this_machine_and_tells_the_page(address, bound):
    cmd = serve.streamlit_command("idx", 8600, share=True, address=address)
    assert after(cmd, "--server.address") == bound
    assert after(cmd, "--server.maxUploadSize") == "20" and after(cmd, "--server.enableXsrfProtection") == "true"
    assert cmd[cmd.index("--") + 1:] == ["--index", str(Path("idx").resolve()), "--share"]


def test_share_needs_an_index(capsys):
    with pytest.raises(SystemExit) as e:
        serve.main(["--share"])
    assert e.value.code == 2 and "--share needs --index" in capsys.readouterr().err

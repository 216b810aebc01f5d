"""Running the CLI in process, through its one entry point (the error boundary included)."""

from __future__ import annotations

import pytest

from orchestrator.cli.app import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``sovereign ARGS``: (exit code, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 1), out, err

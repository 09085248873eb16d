"""`luodi predict` and `luodi embed` take texts from exactly one of --data FILE or --text TEXT."""

from __future__ import annotations

from pathlib import Path

import pytest

from luodi import cli


@pytest.mark.parametrize("command", ["predict", "embed"])
@pytest.mark.parametrize("given", [[], ["--data", "texts.csv", "--text", "a review"]])
def test_neither_or_both_exit_2_naming_the_options(command: str, given: list[str], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main([command, str(tmp_path / "no-such-model"), *given])
    assert stopped.value.code == 2
    assert "give --data FILE or --text TEXT (not both)" in capsys.readouterr().err

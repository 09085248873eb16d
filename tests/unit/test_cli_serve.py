"""`luodi serve` options are made from ServeConfig's fields: one per field, the field's help, old spellings kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from luodi import api, cli
from luodi.serve.settings import ServeConfig, make_config

SERVE = typer.main.get_command(cli.app).commands["serve"]  # type: ignore[attr-defined]
OPTIONS = {param.name: param for param in SERVE.params}


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `luodi serve` passes to api.serve (which would start a server)."""
    calls: dict[str, Any] = {}

    def fake_serve(models: list[str], **kwargs: Any) -> int:
        calls.update(models=models, **kwargs)
        return 0

    monkeypatch.setattr(api, "serve", fake_serve)
    return calls


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.app, ["serve", *args])


def test_every_field_has_an_option_with_its_description() -> None:
    for name, field in ServeConfig.model_fields.items():
        if name in cli.SERVE_KEY_FILES:  # keys come from a file or the environment, never argv
            flag, env = cli.SERVE_KEY_FILES[name]
            option = OPTIONS[flag[2:].replace("-", "_")]
            assert option.opts == [flag] and option.help.startswith(field.description) and env in option.help
            continue
        option = OPTIONS[name]
        assert "--" + name.replace("_", "-") in option.opts
        assert option.help == field.description
        assert option.default is None  # not given: the ServeConfig default applies
    assert set(OPTIONS) == {*ServeConfig.model_fields, "models", "home", "api_keys_file", "admin_keys_file"} - set(
        cli.SERVE_KEY_FILES)


def test_options_added_by_hand_before_are_there_and_new_fields_too() -> None:
    assert "--log-max-bytes" in OPTIONS["log_max_bytes"].opts and "--log-flush-s" in OPTIONS["log_flush_s"].opts
    assert OPTIONS["batching"].secondary_opts == ["--no-batching"]
    assert OPTIONS["access_log"].secondary_opts == ["--no-access-log"]


def test_old_spellings_still_parse(captured: dict[str, Any], tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("k" * 20 + "\n")
    result = invoke("tiny@production", "other", "--host", "127.0.0.1", "--port", "0", "--workers", "2",
                    "--backend", "torch", "--threads", "2", "--max-batch-size", "8", "--max-wait-ms", "1.5",
                    "--no-batching", "--max-queue-rows", "100", "--timeout-ms", "500", "--max-body-bytes", "2048",
                    "--max-rows", "10", "--max-string-length", "50", "--api-keys-file", str(keys),
                    "--reload-interval", "0", "--drain-timeout", "5", "--log-sample-rate", "0.5", "--access-log",
                    "--home", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert captured == {
        "models": ["tiny@production", "other"], "home": tmp_path, "api_keys_file": keys, "admin_keys_file": None,
        "host": "127.0.0.1", "port": 0, "workers": 2, "backend": "torch", "threads": 2, "max_batch_size": 8,
        "max_wait_ms": 1.5, "batching": False, "max_queue_rows": 100, "timeout_ms": 500.0, "max_body_bytes": 2048,
        "max_rows": 10, "max_string_length": 50, "reload_interval_s": 0.0, "drain_timeout_s": 5.0,
        "log_sample_rate": 0.5, "access_log": True}


def test_options_not_given_take_the_config_defaults(captured: dict[str, Any]) -> None:
    assert invoke("tiny", "--reload-interval-s", "3", "--drain-timeout-s", "4").exit_code == 0
    assert captured == {"models": ["tiny"], "home": None, "api_keys_file": None, "admin_keys_file": None,
                        "reload_interval_s": 3.0, "drain_timeout_s": 4.0}
    settings = {key: value for key, value in captured.items()
                if key not in ("models", "home", "api_keys_file", "admin_keys_file")}
    assert make_config(**settings) == ServeConfig(reload_interval_s=3, drain_timeout_s=4)


@pytest.mark.parametrize(("args", "named"), [
    (["--port", "abc"], "'--port'"),
    (["--port", "70000"], "'--port'"),
    (["--timeout-ms", "0"], "'--timeout-ms'"),
    (["--backend", "gpu"], "'--backend'"),
    (["--reload-interval", "-1"], "'--reload-interval"),
    (["--log-sample-rate", "2"], "'--log-sample-rate'"),
    (["--max-body-bytes", "10"], "'--max-body-bytes'"),
])
def test_a_bad_value_exits_2_naming_the_option(captured: dict[str, Any], args: list[str], named: str) -> None:
    result = invoke("tiny", *args)
    assert result.exit_code == 2
    assert named in " ".join(result.output.split())  # the message may be wrapped in a box
    assert captured == {}  # nothing started


def test_serve_help_renders() -> None:
    result = CliRunner().invoke(cli.app, ["serve", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for field in ("--max-batch-size", "--reload-interval", "--drain-timeout", "--log-flush-s", "--api-keys-file"):
        assert field in result.output


@pytest.mark.parametrize("verb", [[], ["predict"], ["serve"], ["init"], ["models"], ["models", "history"],
                                  ["runs", "ls"]])
def test_help_shows_no_type_beside_plain_flags(verb: list[str]) -> None:
    result = CliRunner().invoke(cli.app, [*verb, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "--help" in result.output
    if verb == ["serve"]:
        assert "<int>" in result.output and "<float>" in result.output  # options that take a value keep their type


def test_flags_still_parse_after_their_help_changed(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["models", "ls", "--json", "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "[]"

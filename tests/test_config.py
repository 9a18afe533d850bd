"""Settings precedence: flag > environment > config file (toml/yaml, profiles) > default, and
`pgsched config --json` naming where each value came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pgsched.cli.app as cli_app
from pgsched.config import Settings, load_settings
from pgsched.errors import ConfigError

cli_app.register_commands()

TOML = """
queue = "from-file"
max_attempts = 7
concurrency = 4

[profiles.prod]
queue = "from-profile"
dsn = "postgresql://prod-db/app"
"""

YAML = """
queue: from-yaml
max_attempts: 8
profiles:
  staging:
    max_attempts: 9
"""


def test_defaults_without_anything(tmp_path: Path) -> None:
    loaded = load_settings(env={}, cwd=tmp_path)
    assert loaded.settings.queue == "default" and loaded.settings.dsn is None
    assert loaded.config_file is None
    assert set(loaded.sources.values()) == {"default"}


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    (tmp_path / "pgsched.toml").write_text(TOML)
    env = {"PGSCHED_MAX_ATTEMPTS": "11", "PGSCHED_QUEUE": "from-env"}
    loaded = load_settings({"queue": "from-flag", "dsn": None}, env=env, cwd=tmp_path)
    s, src = loaded.settings, loaded.sources
    assert (s.queue, src["queue"]) == ("from-flag", "flag --queue")
    assert (s.max_attempts, src["max_attempts"]) == (11, "env PGSCHED_MAX_ATTEMPTS")
    assert (s.concurrency, src["concurrency"]) == (4, f"file {tmp_path / 'pgsched.toml'}")
    assert (s.batch_size, src["batch_size"]) == (500, "default")


def test_toml_profile_overrides_top_level(tmp_path: Path) -> None:
    (tmp_path / "pgsched.toml").write_text(TOML)
    loaded = load_settings(env={"PGSCHED_PROFILE": "prod"}, cwd=tmp_path)
    assert loaded.settings.queue == "from-profile"
    assert loaded.settings.max_attempts == 7
    assert loaded.sources["queue"].endswith("[profiles.prod]")
    assert loaded.settings.dsn == "postgresql://prod-db/app"


def test_yaml_file_and_profile(tmp_path: Path) -> None:
    (tmp_path / "pgsched.yaml").write_text(YAML)
    plain = load_settings(env={}, cwd=tmp_path)
    assert (plain.settings.queue, plain.settings.max_attempts) == ("from-yaml", 8)
    staged = load_settings(env={}, cwd=tmp_path, profile="staging")
    assert (staged.settings.queue, staged.settings.max_attempts) == ("from-yaml", 9)


def test_dsn_sources(tmp_path: Path) -> None:
    both = {"DATABASE_URL": "postgresql://a/x", "PGSCHED_DSN": "postgresql://b/y"}
    assert load_settings(env=both, cwd=tmp_path).settings.dsn == "postgresql://b/y"
    only = load_settings(env={"DATABASE_URL": "postgresql://a/x"}, cwd=tmp_path)
    assert (only.settings.dsn, only.sources["dsn"]) == ("postgresql://a/x", "env DATABASE_URL")


@pytest.mark.parametrize(
    ("files", "kwargs", "message"),
    [
        ({"pgsched.toml": TOML}, {"profile": "nope"}, "profile 'nope' not in"),
        ({}, {"profile": "prod"}, "no config file"),
        ({"pgsched.toml": "colour = 'red'"}, {}, "unknown setting 'colour'"),
        ({"pgsched.toml": "max_attempts = 0"}, {}, "setting max_attempts (file"),
        ({"pgsched.toml": "queue = ["}, {}, "config file"),
        ({}, {"env": {"PGSCHED_CONCURRENCY": "many"}}, "env PGSCHED_CONCURRENCY"),
        ({}, {"config_file": "/nonexistent.toml"}, "does not exist"),
        (
            {"pgsched.toml": "idle_heartbeat_interval = 20"},
            {},
            "idle_heartbeat_interval must be at least heartbeat_interval and shorter than",
        ),
    ],
)
def test_config_errors_are_one_line(
    tmp_path: Path, files: dict[str, str], kwargs: dict, message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_config_command_json_shows_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pgsched.toml").write_text(TOML)
    monkeypatch.chdir(tmp_path)
    for var in ("PGSCHED_DSN", "DATABASE_URL", "PGSCHED_PROFILE", "PGSCHED_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(
        cli_app.app,
        ["--dsn", "postgresql://flag-db/x", "--profile", "prod", "config", "--json"],
        env={"PGSCHED_CONCURRENCY": "3"},
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["dsn"] == {"value": "postgresql://flag-db/x", "source": "flag --dsn"}
    assert out["concurrency"] == {"value": 3, "source": "env PGSCHED_CONCURRENCY"}
    assert out["queue"]["value"] == "from-profile"
    assert out["queue"]["source"].endswith("pgsched.toml [profiles.prod]")
    assert out["max_attempts"]["source"].startswith("file ")
    assert out["grace"] == {"value": 30.0, "source": "default"}
    human = CliRunner().invoke(cli_app.app, ["config"]).stdout
    assert "from-file" in human and "pgsched.toml" in human


def test_idle_heartbeat_interval_defaults_to_a_third_of_the_timeout() -> None:
    assert Settings().idle_beat_every == 5.0  # 15 s timeout, 2 s busy interval
    assert Settings(heartbeat_interval=8, heartbeat_timeout=15).idle_beat_every == 8.0
    assert Settings(idle_heartbeat_interval=3).idle_beat_every == 3.0


DURATIONS = (
    "connect_timeout",
    "backoff_base",
    "backoff_cap",
    "heartbeat_interval",
    "heartbeat_timeout",
    "idle_heartbeat_interval",
    "poll_interval",
    "grace",
    "retention",
    "cpu_ceiling",
    "memory_ceiling",
    "completion_hang_timeout",
)
BOUNDED_BELOW_100_YEARS = (
    "connect_timeout",
    "cpu_ceiling",
    "memory_ceiling",
    "completion_hang_timeout",
)


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e300"])
def test_durations_must_be_finite_and_bounded(tmp_path: Path, name: str, value: str) -> None:
    """inf passed before: the worker's claim loop then died on "interval out of range"
    (poll_interval, heartbeat_timeout), or its control loop logged an error every 0.7 s
    forever (retention); 1e300 made every retry's completion fail (backoff_base)."""
    key = f"PGSCHED_{name.upper()}"
    with pytest.raises(ConfigError) as info:
        load_settings(env={key: value}, cwd=tmp_path)
    message = str(info.value)
    assert message.startswith(f"setting {name} (env {key}): ") and "\n" not in message
    if value == "1e300" and name not in BOUNDED_BELOW_100_YEARS:
        assert message.endswith("must be at most 3153600000 seconds (100 years)")


@pytest.mark.parametrize("value", ["0", "-1", "86401"])
def test_completion_hang_timeout_is_positive_and_at_most_a_day(tmp_path: Path, value: str) -> None:
    key = "PGSCHED_COMPLETION_HANG_TIMEOUT"
    with pytest.raises(ConfigError, match=f"setting completion_hang_timeout \\(env {key}\\)"):
        load_settings(env={key: value}, cwd=tmp_path)


def test_completion_hang_timeout_from_env_or_a_minute_and_two_heartbeat_timeouts(
    tmp_path: Path,
) -> None:
    env = {"PGSCHED_COMPLETION_HANG_TIMEOUT": "2.5"}
    assert load_settings(env=env, cwd=tmp_path).settings.completion_hang_after == 2.5
    assert Settings().completion_hang_after == 60  # heartbeat_timeout 15 s
    assert Settings(heartbeat_timeout=45).completion_hang_after == 90
    assert Settings(heartbeat_timeout=45, completion_hang_timeout=10).completion_hang_after == 10


def test_the_longest_durations_are_accepted(tmp_path: Path) -> None:
    env = {f"PGSCHED_{n.upper()}": "3153600000" for n in ("backoff_cap", "retention", "grace")}
    s = load_settings(env=env, cwd=tmp_path).settings
    assert s.backoff_cap == s.retention == s.grace == 3153600000


def test_config_command_refuses_inf_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli_app.app, ["config"], env={"PGSCHED_POLL_INTERVAL": "inf"})
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: setting poll_interval (env PGSCHED_POLL_INTERVAL): Input should be a finite number"
    )


def test_every_setting_is_in_the_configuration_table() -> None:
    """docs/operations.md lists every setting with its default."""
    text = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`") for line in text.splitlines() if line[:3] == "| `"
    }
    assert rows >= set(Settings.model_fields), set(Settings.model_fields) - rows

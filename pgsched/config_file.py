"""The config file: where it is, how it is read (TOML or YAML; refused when another user may
change it), and the settings it gives, a chosen profile's over the top-level ones."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pgsched.errors import ConfigError

CONFIG_FILES = ("pgsched.toml", "pgsched.yaml", "pgsched.yml")


def find_config_file(
    explicit: str | os.PathLike[str] | None, cwd: Path | None = None
) -> Path | None:
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        return p
    base = cwd or Path.cwd()
    for name in CONFIG_FILES:
        if (base / name).is_file():
            return base / name
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {path}: not UTF-8 text ({e.reason} at byte {e.start})"
        ) from None
    # It names the database and the settings a worker runs with: a file another user may
    # change is refused, as ssh refuses such a config.
    if st.st_mode & 0o022 or st.st_uid not in (os.geteuid(), 0):
        raise ConfigError(
            f"config file {path}: writable by other users (owner uid {st.st_uid}, mode "
            f"{st.st_mode & 0o777:o}): chmod go-w it"
        )
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except RecursionError:
        raise ConfigError(f"config file {path}: nested too deeply to read") from None
    except Exception as e:  # tomllib.TOMLDecodeError / yaml.YAMLError
        text = str(e).strip()
        raise ConfigError(
            f"config file {path}: {text.splitlines()[0] if text else type(e).__name__}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a table of settings at the top")
    return data


def file_settings(path: Path | None, profile: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings the config file at ``path`` gives (the top level, then ``profile``'s
    table over it), and where each comes from."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is None:
        if profile:
            raise ConfigError(
                f"profile {profile!r} given but no config file ({', '.join(CONFIG_FILES)})"
            )
        return values, sources
    data = _read(path)
    profiles = _profiles(path, data.pop("profiles", {}) or {})
    for k, v in data.items():
        values[k], sources[k] = v, f"file {path}"
    if profile:
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"profile {profile!r} not in {path} (profiles: {known})")
        for k, v in (profiles[profile] or {}).items():
            values[k], sources[k] = v, f"file {path} [profiles.{profile}]"
    return values, sources


def _profiles(path: Path, profiles: Any) -> dict[str, Any]:
    """The file's ``profiles`` table, each profile a table of settings (or empty)."""
    if not isinstance(profiles, dict):
        raise ConfigError(
            f"config file {path}: profiles must be a table of named profiles, "
            f"not {type(profiles).__name__} {profiles!r}"
        )
    for pname, chosen in profiles.items():
        if not isinstance(chosen, dict | None):
            raise ConfigError(
                f"config file {path}: profiles.{pname} must be a table of settings, "
                f"not {type(chosen).__name__} {chosen!r}"
            )
    return profiles

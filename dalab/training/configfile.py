"""Config files: read TOML or JSON (a run folder's ``config.json`` as is), write
commented TOML.

Values apply in order: Config defaults, the preset (``--preset``, else the file's
``preset`` key), the file's values, then the flags given on the command line.
``config_toml(cfg)`` writes every field with the comment of its declaration in
:class:`dalab.training.config.Config`; unset optional fields are commented out.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

from dalab.errors import ConfigError


def field_comments() -> dict[str, str]:
    """The comment after each field in ``Config``'s source."""
    from dalab.training import config
    out, last = {}, None
    for line in inspect.getsource(config.Config).splitlines():
        line = line.strip()
        if ":" in line and "#" in line and not line.startswith("#"):
            last = line.split(":")[0].strip()
            out[last] = line.split("#", 1)[1].strip()
        elif line.startswith("#   ") and last is not None:  # a comment continued
            out[last] += " " + line[1:].strip()
        else:
            last = None
    return out


def _sections() -> list[tuple[str, list[str]]]:
    """``(title, field names)`` in the order of ``Config``'s ``# -- title --`` comments."""
    from dalab.training import config
    sections: list[tuple[str, list[str]]] = [("", [])]
    names = {f.name for f in dataclasses.fields(config.Config)}
    for line in inspect.getsource(config.Config).splitlines():
        line = line.strip()
        if line.startswith("# --"):
            sections.append((line.strip("# -"), []))
        elif ":" in line and line.split(":")[0].strip() in names:
            sections[-1][1].append(line.split(":")[0].strip())
    return [s for s in sections if s[1]]


def read_config_file(path: str | Path) -> dict:
    """The values of a TOML or JSON config file (``{"config": {...}}`` is unwrapped)."""
    from dalab.training.config import FIELDS

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror})") from None
    if path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None
    else:
        import tomllib
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML ({err})") from None
    if isinstance(values, dict) and isinstance(values.get("config"), dict):
        values = values["config"]  # a run folder's config.json: {config, environment}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a table of config keys")
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise ConfigError(f"{path}: unknown config key {unknown[0]!r}; known keys: "
                          f"{', '.join(sorted(FIELDS))}")
    return values


def merge(file_values: dict, preset: str | None, flags: dict):
    """Config from defaults -> preset (``preset``, else the file's) -> file -> flags."""
    from dalab.training.config import make_config

    values = {k: v for k, v in file_values.items() if k != "preset"}
    values.update(flags)
    return make_config(preset if preset is not None else file_values.get("preset"),
                       **values)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def config_toml(cfg) -> str:
    """``cfg`` as a commented TOML file that :func:`read_config_file` reads back."""
    comments = field_comments()
    values = cfg.to_dict()
    lines = ["# dalab training configuration: dalab train --config FILE [flags]",
             "# Values apply in order: defaults, preset, this file, command-line flags.",
             f"# Written for preset {cfg.preset!r}; every field is listed."]
    for title, names in _sections():
        lines += ["", f"# -- {title} " + "-" * max(3, 70 - len(title))]
        for name in names:
            value = values[name]
            text = (f"# {name} = \"\"" if value is None
                    else f"{name} = {_toml_value(value)}")
            lines.append(f"{text:<34}# {comments.get(name, '')}".rstrip())
    return "\n".join(lines) + "\n"

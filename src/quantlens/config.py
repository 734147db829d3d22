"""Runs described in a TOML file: ``quantlens evaluate --config run.toml``.

The file holds the command's options under its name (``[evaluate]``, ``[compare]``, ...) or at
the top level; keys are the option names (``batch-size`` or ``batch_size``), positionals by
their names (``reference``, ``candidates``, ``model``, ``models``). Options given on the
command line win. Unknown keys and values of the wrong type are errors naming the key.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quantlens.errors import ConfigError


def _load(path: str | os.PathLike[str]) -> dict[str, Any]:
    import tomllib  # here, not for every command: 2-5 ms of start-up

    p = Path(path)
    try:
        if p.exists() and not p.is_file():
            raise OSError("not a regular file")
        if p.exists() and p.stat().st_size > MAX_CONFIG_BYTES:
            raise OSError(f"larger than {MAX_CONFIG_BYTES // 1024} KiB")
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except RecursionError:
        raise ConfigError(f"cannot read {p} as TOML: nested too deeply") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {p} as TOML: {exc}") from None


#: A configuration file larger than this is not a configuration.
MAX_CONFIG_BYTES = 1024 * 1024


def _scalar(key: str, value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{where}: '{key}' must be a string or a number, got {value!r}")
    return str(value)


def config_argv(
    path: str | os.PathLike[str], command: str, parser: argparse.ArgumentParser
) -> tuple[list[str], list[str]]:
    """The command-line tokens a config file stands for: (positionals, options).

    Raises:
        ConfigError: the file cannot be read, or has an unknown key or a badly typed value.
    """
    data = _load(path)
    table = data.get(command, {k: v for k, v in data.items() if not isinstance(v, dict)})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{command}] must be a table of options")
    where = f"{path} [{command}]"
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    positionals: list[str] = []
    options: list[str] = []
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        action = actions.get(key)
        if action is None:
            known = ", ".join(sorted(k.replace("_", "-") for k in actions))
            raise ConfigError(f"{where}: unknown key '{raw_key}'; known keys: {known}")
        values = value if isinstance(value, list) else [value]
        if not action.option_strings:
            positionals += [_scalar(raw_key, v, where) for v in values]
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: '{raw_key}' must be true or false, got {value!r}")
            options += [flag] if value else []
        elif isinstance(action, argparse._AppendAction):
            for v in values:
                options += [flag, _scalar(raw_key, v, where)]
        else:
            if isinstance(value, list):
                value = ",".join(_scalar(raw_key, v, where) for v in value)  # --threads 1,2
            options += [flag, _scalar(raw_key, value, where)]
    return positionals, options


def merge_argv(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """``argv`` with ``--config FILE`` replaced by the options the file holds (the command
    line's own options and positionals win)."""
    args = list(argv)
    if "--config" not in args:
        return args
    i = args.index("--config")
    if i + 1 >= len(args):
        raise ConfigError("--config needs a file path")
    path = args[i + 1]
    del args[i : i + 2]
    command = args[0] if args else ""
    sub = _subparser(parser, command)
    positionals, options = config_argv(path, command, sub)
    given_positionals = _has_positionals(args[1:], sub)
    return [command, *([] if given_positionals else positionals), *options, *args[1:]]


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    raise ConfigError(f"--config needs a command first, e.g. quantlens evaluate --config {command}")


def _has_positionals(tokens: Sequence[str], sub: argparse.ArgumentParser) -> bool:
    """Whether the command line itself names positional arguments."""
    takes_value = {
        s for a in sub._actions for s in a.option_strings if a.nargs != 0
    }  # fmt: skip
    skip = False
    for t in tokens:
        if skip:
            skip = False
        elif t.startswith("-"):
            skip = t in takes_value
        else:
            return True
    return False

"""Read a monitor config from YAML, with every error pointing at a line of the file.

YAML is parsed twice: once into PyYAML's node tree (which knows each key's line and column) and once
into plain Python data for pydantic. A pydantic error's location — e.g. `('streams', 0, 'source',
'file', 'path')`, where 'file' is the discriminator tag pydantic adds — is walked down the node tree
as far as it goes; a missing key therefore points at the mapping that lacks it. Duplicate keys, which
PyYAML would silently let the last one win, are errors here: in a clinical config they are a mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .config import MonitorConfig
from .errors import StreamMonitorError

__all__ = ["ConfigError", "ConfigProblem", "load_config", "parse_config"]


@dataclass(frozen=True)
class ConfigProblem:
    """One error: 1-based line and column (0 when unknown), dotted location, message."""

    line: int
    column: int
    location: str
    message: str

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}:{self.column}" if self.line else source
        return f"{where}: {self.location}: {self.message}" if self.location else f"{where}: {self.message}"


class ConfigError(StreamMonitorError):
    """A config file that cannot be read, parsed or validated; `problems` has one entry per error."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = [p.format(source) for p in problems]
        super().__init__(f"invalid config ({len(problems)} problem{'s' * (len(problems) != 1)}):\n  "
                         + "\n  ".join(lines))


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _node_at(root: yaml.Node, loc: tuple[Any, ...], want_key: bool = False) -> tuple[yaml.Node, tuple[Any, ...]]:
    """The deepest node along `loc` (the key node of the last part when `want_key`), and the location
    as it reads in the file: parts not in the file (pydantic's discriminator tags) are left out, except a
    last part that names a missing key."""
    node, found = root, ()
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        child = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            pair = next(((key, value) for key, value in node.value if key.value == part), None)
            if pair is not None:
                child = pair[0] if (want_key and last) else pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
        if child is None:
            if last:
                found = (*found, part)  # a missing key: name it, point at the mapping that lacks it
            continue  # a discriminator tag: stay on the parent
        node, found = child, (*found, part)
    return node, found


def _duplicate_keys(node: yaml.Node, path: tuple[Any, ...] = ()) -> list[ConfigProblem]:
    problems = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if key.value in seen:
                first = seen[key.value].start_mark.line + 1
                problems.append(ConfigProblem(key.start_mark.line + 1, key.start_mark.column + 1,
                                              _location((*path, key.value)), f"duplicate key (first on line {first})"))
            seen[key.value] = key
            problems += _duplicate_keys(value, (*path, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, (*path, index))
    return problems


def parse_config(text: str, source: str = "<config>", base: Path | None = None) -> MonitorConfig:
    """Validate YAML text into a `MonitorConfig`; relative paths resolve against `base` when given.

    Raises:
        ConfigError: YAML syntax errors, duplicate keys, schema violations — each with its line.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise ConfigError(source, [ConfigProblem(line, column, "", f"YAML syntax: {getattr(exc, 'problem', exc)}")]) from exc
    if root is None or not isinstance(data, dict):
        raise ConfigError(source, [ConfigProblem(1, 1, "", "the file must hold a YAML mapping (version, streams, …)")])
    duplicates = _duplicate_keys(root)
    if duplicates:
        raise ConfigError(source, duplicates)
    try:
        config = MonitorConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            node, found = _node_at(root, tuple(error["loc"]), want_key=error["type"] == "extra_forbidden")
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key (not part of the schema; check its spelling and indentation)"
            problems.append(ConfigProblem(node.start_mark.line + 1, node.start_mark.column + 1,
                                          _location(found), message))
        raise ConfigError(source, sorted(problems, key=lambda p: (p.line, p.column))) from None
    return config.resolve_paths(base) if base is not None else config


def load_config(path: str | Path) -> MonitorConfig:
    """Read and validate a config file; relative paths in it resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [ConfigProblem(0, 0, "", f"cannot read: {exc.strerror}")]) from exc
    return parse_config(text, str(path), path.resolve().parent)

"""Reading a space file: its bytes and its YAML mapping, strictly (no key twice, no aliases).

The one place a space file's text is parsed; study/space.py (and study/ablation.py through it)
validate what it holds. `SpaceError` is every space-file error: one line naming the file and key.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml


class SpaceError(ValueError):
    """A space file that cannot be used; the message names the file, the key and what is allowed."""


class _SpaceLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, stricter: a key given twice is an error (YAML keeps the last one: a
    second `study:` section would silently reset the study), and so is an alias (`*name`), which can
    expand a few lines into gigabytes ("billion laughs"); a space file writes its values out."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor}: aliases are not allowed in a space file; write the value out",
                event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader's own error names it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key]}); a key may appear once",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_space_file(path: Path) -> tuple[bytes, dict]:
    """A space file's bytes and its YAML mapping (SpaceError when unreadable, not YAML, or not a mapping)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read the space file ({exc.strerror or exc})") from None
    return data, parse_space_yaml(data, path)


def parse_space_yaml(data: bytes, path: Path) -> dict:
    """A space file's bytes as its YAML mapping; `path` names it in messages (SpaceError when not YAML or
    not a mapping)."""
    try:
        doc = yaml.load(data, Loader=_SpaceLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SpaceError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise SpaceError(f"{path}: expected a mapping with 'study' and 'space' sections")
    return doc

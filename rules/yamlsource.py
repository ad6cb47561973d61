"""YAML with line numbers: parse a document and remember where every key and value is.

PyYAML composes a document into nodes that carry marks (line, column) before it
constructs Python objects; :func:`load_yaml` keeps both, so a validation error reported
at a *location* such as ``("groups", 0, "rules", 2, "for")`` can be turned back into
``file:line``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["Location", "SourceError", "YamlDocument", "format_path", "load_yaml"]

Location = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class SourceError:
    """One problem in an input file: ``file:line: field: message``."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass(slots=True)
class YamlDocument:
    """A parsed YAML document with the node of every location in it."""

    source: str
    data: Any
    #: location → the value node there (scalars, mappings and sequences)
    nodes: dict[Location, yaml.Node] = field(default_factory=dict)
    #: location of a mapping entry → line (1-based) of its key
    key_lines: dict[Location, int] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """Line of the deepest known prefix of ``loc`` (the key's line for mapping entries)."""
        path = tuple(loc)
        while True:
            if path in self.key_lines:
                return self.key_lines[path]
            if path in self.nodes:
                return self.nodes[path].start_mark.line + 1
            if not path:
                return None
            path = path[:-1]

    def line_of_column(self, loc: Sequence[str | int], column: int) -> int | None:
        """Line (1-based) of character ``column`` (1-based) of the scalar at ``loc``.

        For a scalar written over several lines (``>-`` or ``|`` blocks, long plain or
        quoted scalars), YAML joins the lines with one space or newline: each source line
        stands for its text without indentation plus one character. Falls back to
        :meth:`line_of` when the scalar is on one line or its text is not at hand.
        """
        node = self.nodes.get(tuple(loc))
        if not isinstance(node, yaml.ScalarNode) or node.start_mark.line == node.end_mark.line:
            return self.line_of(loc)
        buffer = getattr(node.start_mark, "buffer", None)
        if not isinstance(buffer, str):
            return self.line_of(loc)
        lines = buffer.splitlines()
        first = node.start_mark.line + (1 if node.style in ("|", ">") else 0)
        last = min(node.end_mark.line, len(lines) - 1)
        seen = 0
        for i in range(first, last + 1):
            text = lines[i][node.start_mark.column :] if i == node.start_mark.line else lines[i].lstrip()
            if not text.strip():
                continue
            seen += len(text.rstrip()) + 1
            if column <= seen:
                return i + 1
        return self.line_of(loc)

    def get(self, loc: Sequence[str | int]) -> Any:
        """The constructed value at ``loc``, or None."""
        value = self.data
        for part in loc:
            in_dict = isinstance(value, dict) and part in value
            in_list = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
            if not (in_dict or in_list):
                return None
            value = value[part]
        return value


def format_path(loc: Sequence[str | int]) -> str:
    """``("groups", 0, "rules", 2, "for")`` → ``groups[0].rules[2].for``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml(text: str, source: str) -> tuple[YamlDocument | None, list[SourceError]]:
    """Parse ``text``; return the document, or None and the errors (syntax, duplicate keys)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        return None, [SourceError(source, line, "", f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, [SourceError(source, None, "", f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    doc = YamlDocument(source, data)
    errors: list[SourceError] = []
    if node is not None:
        _index(doc, node, (), errors)
    return doc, errors


def _index(doc: YamlDocument, node: yaml.Node, path: Location, errors: list[SourceError]) -> None:
    doc.nodes[path] = node
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                errors.append(
                    SourceError(
                        doc.source,
                        line,
                        format_path((*path, key)),
                        f"duplicate key (first at line {seen[key]})",
                    )
                )
                continue
            seen[key] = line
            doc.key_lines[(*path, key)] = line
            _index(doc, value_node, (*path, key), errors)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(doc, item, (*path, i), errors)

"""Load an answer file safely, keeping the line of every field.

Hostile input is expected: binary junk, alias bombs, huge files, duplicate keys.
Every failure becomes an AnswersError naming file, line and field.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    NodeEvent,
)

from halgen.errors import AnswersError, FieldPath, Problem

MAX_BYTES = 1024 * 1024  # an answer file is a few KB; anything this large is a mistake
MAX_DEPTH = 8  # mappings and lists inside each other; the schema's deepest is 4 (admins[0].ssh_keys[0])


@dataclass(frozen=True)
class LoadedAnswers:
    """Plain answers plus a way back to the line each field was written on."""

    file: str
    data: dict[str, Any]
    _tree: CommentedMap

    def line_of(self, path: FieldPath) -> int:
        """1-based line of the deepest part of ``path`` present in the file (1 if none)."""
        node: Any = self._tree
        line = 1
        for part in path:
            if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
                if part not in node.lc.data:  # not written here (a value copied in): keep the last line known
                    break
                line = node.lc.key(part)[0] + 1
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line = node.lc.item(part)[0] + 1
            else:
                break
            node = node[part]
        return line


def from_mapping(data: dict[str, Any], file: str = "<data>") -> LoadedAnswers:
    """Wrap answers that did not come from a file (copier's data, tests)."""
    return LoadedAnswers(file=file, data=data, _tree=CommentedMap())


def load(path: Path) -> LoadedAnswers:
    """Read a regular file of at most MAX_BYTES (checked while reading: /dev/zero and FIFOs
    are refused at once, never read) and parse it."""
    name = str(path)
    try:
        kind = path.stat().st_mode
        if not stat.S_ISREG(kind):
            raise _error(name, 1, f"the answer file must be a regular file, not {_file_kind(kind)}")
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as err:
        raise _error(name, 1, f"cannot read the answer file: {err.strerror}") from None
    return parse(raw, name)


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "a special file"


def parse(raw: bytes, name: str) -> LoadedAnswers:
    if len(raw) > MAX_BYTES:
        raise _error(name, 1, f"answer file is too large (over {MAX_BYTES} bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise _error(name, line, "answer file is not UTF-8 text (binary data?)") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise _error(name, line, "answer file contains a NUL byte (binary data?)")
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise _error(name, 1, "answer file is empty; write '{}' to take every default")

    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        _reject_aliases_and_documents(yaml, text, name)
        tree = yaml.load(text)
    except AnswersError:
        raise
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        # An error at the end of the stream points one past the last line: name the last one.
        line = min(mark.line + 1, max(1, len(text.splitlines()))) if mark is not None else 1
        what = (err.problem or err.context or "malformed YAML").strip().splitlines()[0]
        raise _error(name, line, f"invalid YAML: {what}") from None
    except (YAMLError, ValueError, RecursionError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise _error(name, 1, f"invalid YAML: {first}") from None

    merged = _first_merge(tree)
    if merged is not None:
        raise _error(name, merged, "YAML merge keys ('<<') are not allowed in answer files; write each field out")
    if not isinstance(tree, CommentedMap):
        kind = "a list" if isinstance(tree, list) else f"a single {type(tree).__name__} value"
        raise _error(name, 1, f"the answers must be a mapping of field: value, not {kind}")
    bad_keys = [k for k in tree if not isinstance(k, str)]
    if bad_keys:
        raise AnswersError([Problem(name, tree.lc.key(k)[0] + 1, "field names must be text", (str(k),))
                            for k in bad_keys])
    return LoadedAnswers(file=name, data=_plain(tree), _tree=tree)


def _first_merge(node: Any) -> int | None:
    """The line of the first mapping that merges another in ('<<: ...'), or None."""
    if isinstance(node, CommentedMap):
        if getattr(node, "merge", None):
            return int(node.lc.line) + 1
        children: Any = node.values()
    elif isinstance(node, CommentedSeq):
        children = node
    else:
        return None
    return next((line for child in children if (line := _first_merge(child)) is not None), None)


def _error(name: str, line: int, message: str) -> AnswersError:
    """A problem with the file as a whole (not one field)."""
    return AnswersError([Problem(name, line, message, ())])


def _reject_aliases_and_documents(yaml: YAML, text: str, name: str) -> None:
    """Anchors and aliases have no use in answers and enable 'billion laughs' bombs; answers
    nest three levels deep, so deep nesting is refused before anything is built from it."""
    documents = depth = 0
    for event in yaml.parse(text):
        if isinstance(event, DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _error(name, event.start_mark.line + 1, "answer file holds more than one YAML document")
        if isinstance(event, AliasEvent) or (isinstance(event, NodeEvent) and event.anchor):
            raise _error(name, event.start_mark.line + 1, "YAML anchors and aliases are not allowed in answer files")
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _error(name, event.start_mark.line + 1,
                             f"nested more than {MAX_DEPTH} levels deep (answers need at most 4)")
        elif isinstance(event, CollectionEndEvent):
            depth -= 1


def _plain(value: Any) -> Any:
    """ruamel's round-trip types -> plain dict/list/str/int/float/bool/None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value  # dates and other YAML types: the schema reports them by type

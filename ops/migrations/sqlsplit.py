"""Splitting a ClickHouse SQL file into statements, and filling in its ``{cluster}`` placeholder.

Both rest on one small scanner, :func:`_scan`, which cuts the text into consecutive spans: plain code, and the
constructs in which ``;`` and ``{cluster}`` mean nothing to us:

* string literals ``'...'`` and quoted identifiers ``"..."`` / ```...```: a quote is escaped by doubling it or by
  a backslash (``'it''s'``, ``'a\\'b'``), as in ClickHouse's own lexer;
* line comments ``-- ...``, and the other two ClickHouse accepts, ``// ...`` and ``# ...`` / ``#!...``;
* block comments ``/* ... */``, which nest in ClickHouse (``/* a /* b */ c */`` is one comment);
* heredocs ``$$ ... $$`` and ``$tag$ ... $tag$``.

Inside a quoted string ``{cluster}`` is a ClickHouse *server* macro
(``ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')``), so :func:`render` only
ever touches code spans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from ops.core.errors import BadInput

CODE, STRING, IDENTIFIER, COMMENT, HEREDOC = "code", "string", "identifier", "comment", "heredoc"

# Characters at which something other than plain code may start; the scanner jumps from one to the next.
_MAYBE_SPECIAL = re.compile(r"""['"`$/#-]""")
# A heredoc opener: `$`, an optional tag of word characters, `$`.
_HEREDOC_OPEN = re.compile(r"\$[A-Za-z0-9_]*\$")
# Characters that continue a bare word: a `$` right after one of them is part of an identifier (`a$b`), not a heredoc.
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")

_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# `ON CLUSTER {cluster}`, with the whitespace before it (removed along with it when there is no cluster).
_ON_CLUSTER = re.compile(r"(?P<lead>\s*)(?P<keywords>\bON\s+CLUSTER\s*)\{cluster\}", re.IGNORECASE)
_PLACEHOLDER = "{cluster}"


@dataclass(frozen=True)
class Statement:
    """One statement: its text (no trailing ``;``) and the 1-based line of its first token in the file."""

    text: str
    line: int


def _line_of(sql: str, offset: int) -> int:
    return sql.count("\n", 0, offset) + 1


def _unterminated(what: str, sql: str, start: int) -> BadInput:
    return BadInput(f"unterminated {what} starting on line {_line_of(sql, start)}")


def _quoted_end(sql: str, start: int) -> int:
    """End (exclusive) of the string or quoted identifier opened at ``start``."""
    quote = sql[start]
    i = start + 1
    while i < len(sql):
        ch = sql[i]
        if ch == "\\":
            i += 2  # a backslash escapes whatever follows, the quote included
        elif ch == quote:
            if sql.startswith(quote, i + 1):
                i += 2  # doubled quote: an escaped quote, the literal goes on
            else:
                return i + 1
        else:
            i += 1
    raise _unterminated("string" if quote == "'" else "quoted identifier", sql, start)


def _block_comment_end(sql: str, start: int) -> int:
    """End (exclusive) of the ``/* */`` comment opened at ``start``; nested comments count."""
    depth, i = 1, start + 2
    while i < len(sql) - 1:
        pair = sql[i:i + 2]
        if pair == "/*":
            depth, i = depth + 1, i + 2
        elif pair == "*/":
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise _unterminated("comment", sql, start)


def _special_at(sql: str, i: int) -> tuple[str, int] | None:
    """The kind and end of the non-code construct starting at ``i``, or None when ``sql[i]`` is plain code."""
    ch, pair = sql[i], sql[i:i + 2]
    if ch == "'":
        return STRING, _quoted_end(sql, i)
    if ch in "\"`":
        return IDENTIFIER, _quoted_end(sql, i)
    if pair in ("--", "//", "# ", "#!"):
        newline = sql.find("\n", i)  # the newline itself stays code (whitespace)
        return COMMENT, len(sql) if newline < 0 else newline
    if pair == "/*":
        return COMMENT, _block_comment_end(sql, i)
    if ch == "$" and (i == 0 or sql[i - 1] not in _WORD_CHARS):
        opener = _HEREDOC_OPEN.match(sql, i)
        if opener:
            tag = opener.group()
            close = sql.find(tag, opener.end())
            if close < 0:
                raise _unterminated(f"heredoc {tag}", sql, i)
            return HEREDOC, close + len(tag)
    return None


def _scan(sql: str) -> Iterator[tuple[str, int, int]]:
    """Consecutive spans ``(kind, start, end)`` covering ``sql`` exactly; adjacent code is one span.

    Raises ``BadInput`` for a string, identifier, comment or heredoc that never ends.
    """
    code_start = i = 0
    while True:
        found = _MAYBE_SPECIAL.search(sql, i)
        if not found:
            break
        i = found.start()
        special = _special_at(sql, i)
        if special is None:
            i += 1  # a lone `-`, `/`, `#` or `$`: plain code
            continue
        kind, end = special
        if code_start < i:
            yield CODE, code_start, i
        yield kind, i, end
        code_start = i = end
    if code_start < len(sql):
        yield CODE, code_start, len(sql)


def split_statements(sql: str) -> list[Statement]:
    """The statements of ``sql``, split on top-level ``;``.

    A statement starts at its first token that is not whitespace or a comment and ends before its ``;``, with
    trailing whitespace removed; comments inside it are kept. Stretches holding only whitespace and comments are
    no statement. The last statement needs no ``;``.
    """
    statements: list[Statement] = []
    start: int | None = None  # offset of the current statement's first token, once seen
    line, line_offset = 1, 0  # line numbers are counted incrementally, from the last statement on

    def finish(end: int) -> None:
        nonlocal line, line_offset
        line += sql.count("\n", line_offset, start)
        line_offset = start
        statements.append(Statement(sql[start:end].rstrip(), line))

    for kind, begin, end in _scan(sql):
        if kind == COMMENT:
            continue
        if kind != CODE:  # a string, identifier or heredoc is a token
            if start is None:
                start = begin
            continue
        for i in range(begin, end):
            ch = sql[i]
            if ch == ";":
                if start is not None:
                    finish(i)
                    start = None
            elif start is None and not ch.isspace():
                start = i
    if start is not None:
        finish(len(sql))
    return statements


def render(sql: str, cluster: str | None) -> str:
    """``sql`` with chops' ``{cluster}`` placeholder filled in, outside strings, identifiers, comments, heredocs.

    * ``ON CLUSTER {cluster}`` becomes ``ON CLUSTER `name```, or disappears (with the whitespace before it, but
      not its newlines) when there is no cluster, so the same file runs on a single server and on a cluster;
    * any other ``{cluster}`` becomes the string literal ``'name'`` (``Distributed({cluster}, db, t)``), and is
      a ``BadInput`` when there is no cluster.
    """
    cluster = cluster or None
    if cluster is not None and not _CLUSTER_NAME.fullmatch(cluster):
        raise BadInput(f"cluster name {cluster!r} is not valid: use only letters, digits, '_', '.' and '-'")

    def on_cluster(match: re.Match) -> str:
        if cluster is not None:
            return f"{match['lead']}{match['keywords']}`{cluster}`"
        # Removed entirely, but its newlines stay, so line numbers still match the file; without any, keep one
        # space only if a word would otherwise be glued to the previous one.
        newlines = match.group().count("\n")
        if newlines:
            return "\n" * newlines
        following = match.string[match.end():match.end() + 1]
        return " " if match["lead"] and (following.isalnum() or following == "_") else ""

    parts = []
    for kind, begin, end in _scan(sql):
        text = sql[begin:end]
        if kind == CODE and _PLACEHOLDER in text:
            if cluster is None:
                bare = _first_bare_placeholder(text)
                if bare is not None:
                    raise BadInput(
                        f"SQL on line {_line_of(sql, begin + bare)} uses {{cluster}} but clickhouse.cluster is not set",
                        hint="set clickhouse.cluster, or use {cluster} only in ON CLUSTER {cluster}")
            text = _ON_CLUSTER.sub(on_cluster, text)
            text = text.replace(_PLACEHOLDER, f"'{cluster}'")
        parts.append(text)
    return "".join(parts)


def _first_bare_placeholder(code: str) -> int | None:
    """Offset of the first ``{cluster}`` in ``code`` that is not part of ``ON CLUSTER {cluster}``."""
    in_on_cluster = {match.end() for match in _ON_CLUSTER.finditer(code)}
    for match in re.finditer(re.escape(_PLACEHOLDER), code):
        if match.end() not in in_on_cluster:
            return match.start()
    return None

"""Splitting a ClickHouse SQL file into statements, and its ``ON CLUSTER`` clauses and ``{cluster}`` placeholder.

Both rest on one small scanner, :func:`_scan`, which cuts the text into consecutive spans: plain code, and the
constructs in which ``;`` and ``{cluster}`` mean nothing to us:

* string literals ``'...'`` and quoted identifiers ``"..."`` / ```...```: a quote is escaped by doubling it or by
  a backslash (``'it''s'``, ``'a\\'b'``), as in ClickHouse's own lexer;
* line comments ``-- ...``, and the other two ClickHouse accepts, ``// ...`` and ``# ...`` / ``#!...``;
* block comments ``/* ... */``, which nest in ClickHouse (``/* a /* b */ c */`` is one comment);
* heredocs ``$$ ... $$`` and ``$tag$ ... $tag$``.

Inside a quoted string ``{cluster}`` is a ClickHouse *server* macro
(``ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')``), so :func:`render` only
ever touches code spans, and a quoted name only as the name of an ``ON CLUSTER`` clause.

An ``ON CLUSTER`` clause names its cluster with chops' template (``{cluster}``, or the Go-template spelling
``{{.CLUSTER}}`` of golang-migrate sets), a bare name (``ON CLUSTER default``) or a quoted one (``'{cluster}'``,
``"name"``, ```name```). Clauses are found on tokens, so comments and line breaks may sit anywhere in them; a
statement's clause comes before its first ``SELECT`` (``CREATE VIEW v ON CLUSTER c AS SELECT …``), so a
``JOIN … ON cluster …`` of a column named ``cluster`` is never taken for one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
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
# The tokens of a code span that matter to ON CLUSTER: chops' placeholder in either spelling, words, `;`, and any
# other character (which ends a clause).
_CODE_TOKEN = re.compile(r"(?P<template>\{cluster\}|\{\{\s*\.?CLUSTER\s*\}\})|(?P<word>\w+)|(?P<other>\S)",
                         re.IGNORECASE)
# Words after `ON cluster` that show it is a join condition on a column, not a cluster clause.
_NOT_A_CLUSTER = frozenset({"and", "or", "not", "in", "is", "like", "ilike", "between", "global", "to", "from",
                            "for", "as", "where", "using", "settings", "format", "group", "order", "limit"})
TEMPLATE, WORD, OTHER = "template", "word", "other"


# goose's switch for environment substitution, `-- +goose ENVSUB ON` / `OFF` alone on its line (goose reads its
# annotations case-insensitively); ``ops.migrations.templates`` expands ``${NAME}`` on the lines between.
GOOSE_ENVSUB = re.compile(r"--\s*\+goose\s+envsub\s+(?P<state>on|off)", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    """One statement: its text (no trailing ``;``), the 1-based line of its first token in the file, and the lines
    of the file it spans that lie in a goose ``ENVSUB ON`` block (:func:`envsub_lines`; empty for most files)."""

    text: str
    line: int
    envsub: frozenset[int] = frozenset()


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
    envsub = envsub_lines(sql)
    if envsub:
        statements = [replace(s, envsub=frozenset(n for n in envsub if s.line <= n <= s.line + s.text.count("\n")))
                      for s in statements]
    return statements


def envsub_lines(sql: str) -> frozenset[int]:
    """The 1-based lines of ``sql`` between a ``-- +goose ENVSUB ON`` line and the next ``-- +goose ENVSUB OFF`` (or
    the end), the marker lines themselves excluded: where goose expands ``${NAME}``. goose reads a file line by line
    and switches on marker lines wherever they are, inside a statement too (its parser's ``useEnvsub``)."""
    if not GOOSE_ENVSUB.search(sql):
        return frozenset()
    found, on = set(), False
    for number, line in enumerate(sql.split("\n"), 1):
        marker = GOOSE_ENVSUB.fullmatch(line.strip())
        if marker:
            on = marker["state"].lower() == "on"
        elif on:
            found.add(number)
    return frozenset(found)


@dataclass(frozen=True)
class _Token:
    kind: str  # TEMPLATE, WORD, OTHER, or the scanner's STRING / IDENTIFIER / HEREDOC
    start: int
    end: int
    lead: int  # start of the whitespace right before the token, within its code span


@dataclass(frozen=True)
class OnCluster:
    """One ``ON CLUSTER`` clause: from the whitespace before ``ON`` (``start``) to the end of the name."""

    start: int
    end: int
    name_start: int
    name: str  # as ClickHouse reads it: unquoted; chops' template as written
    templated: bool
    line: int


def _tokens(sql: str) -> list[_Token]:
    """The tokens of ``sql`` outside comments (see ``_CODE_TOKEN``); strings and identifiers are one token each."""
    tokens = []
    for kind, begin, end in _scan(sql):
        if kind == COMMENT:
            continue
        if kind != CODE:
            tokens.append(_Token(kind, begin, end, begin))
            continue
        previous_end = begin
        for match in _CODE_TOKEN.finditer(sql, begin, end):
            tokens.append(_Token(match.lastgroup, match.start(), match.end(), previous_end))
            previous_end = match.end()
    return tokens


def _unquote(text: str) -> str:
    """The value of a quoted string or identifier: doubled quotes and backslash escapes undone."""
    quote, inner = text[0], text[1:-1]
    return re.sub(r"\\(.)", r"\1", inner.replace(quote * 2, quote))


def _cluster_name(sql: str, token: _Token) -> tuple[str, bool] | None:
    """The cluster a token names right after ``ON CLUSTER``, and whether it is chops' template; None if none."""
    text = sql[token.start:token.end]
    if token.kind == TEMPLATE:
        return text, True
    if token.kind in (STRING, IDENTIFIER):
        return _unquote(text), False
    if token.kind == WORD and text.lower() not in _NOT_A_CLUSTER:
        return text, False
    return None


def on_cluster_clauses(sql: str) -> list[OnCluster]:
    """Every ``ON CLUSTER`` clause of ``sql`` (any number of statements), in order. ``BadInput`` for an unterminated
    string or comment."""
    return _clauses(sql, _tokens(sql))


def _clauses(sql: str, tokens: list[_Token]) -> list[OnCluster]:
    clauses = []
    selected = False  # a SELECT was seen in this statement: ON CLUSTER comes before it
    for i, token in enumerate(tokens):
        text = sql[token.start:token.end].lower()
        if token.kind == OTHER and text == ";":
            selected = False
        elif token.kind == WORD and text == "select":
            selected = True
        elif (token.kind == WORD and text == "on" and not selected and i + 2 < len(tokens)
              and tokens[i + 1].kind == WORD and sql[tokens[i + 1].start:tokens[i + 1].end].lower() == "cluster"):
            named = _cluster_name(sql, tokens[i + 2])
            if named is not None:
                name_token = tokens[i + 2]
                clauses.append(OnCluster(token.lead, name_token.end, name_token.start, named[0], named[1],
                                         _line_of(sql, token.start)))
    return clauses


def literal_clusters(sql: str) -> list[tuple[str, int]]:
    """``(name, line)`` of every ``ON CLUSTER`` clause of ``sql`` that names its cluster literally (``ON CLUSTER
    default``, ``'main'``, `` `main` ``), line 1-based within ``sql``. Not chops' template, and not a name holding a
    server macro (``'{cluster}'``): the server expands that itself. On a server with ``clickhouse.cluster`` set,
    a name that differs from it is a mistake ``db.validate`` reports."""
    return [(c.name, c.line) for c in on_cluster_clauses(sql) if not c.templated and "{" not in c.name]


def _removed(sql: str, start: int, end: int) -> str:
    """What replaces a clause that is removed: its newlines, so line numbers still match the file; without any,
    one space only where the words around it would otherwise be glued together."""
    newlines = sql.count("\n", start, end)
    if newlines:
        return "\n" * newlines
    following = sql[end:end + 1]
    glued = following.isalnum() or following in ("_", "'", '"', "`")
    return " " if start < end and sql[start].isspace() and glued else ""


def render(sql: str, cluster: str | None, *, embedded: bool = False) -> str:
    """``sql`` as it runs: ``ON CLUSTER`` clauses and chops' cluster placeholder resolved, outside strings,
    identifiers, comments and heredocs.

    * ``embedded``: the engine has no cluster, so every ``ON CLUSTER`` clause is removed, templated or literal
      (``ON CLUSTER default``, ``ON CLUSTER '{cluster}'``); ``cluster`` is ignored;
    * otherwise ``ON CLUSTER {cluster}`` (or ``{{.CLUSTER}}``) becomes ``ON CLUSTER `name``` with a cluster, and
      disappears without one, so the same file runs on a single server and on a cluster; a literal clause is
      kept as written (:func:`literal_clusters` lists them for validation);
    * a clause removed leaves its newlines (line numbers still match the file) and never glues two words;
    * any other placeholder becomes the string literal ``'name'`` (``Distributed({cluster}, db, t)``), and is a
      ``BadInput`` when there is no cluster.
    """
    cluster = None if embedded else (cluster or None)
    if cluster is not None and not _CLUSTER_NAME.fullmatch(cluster):
        raise BadInput(f"cluster name {cluster!r} is not valid: use only letters, digits, '_', '.' and '-'")
    if "cluster" not in sql.lower():
        return sql  # nothing to do (most statements): not even a scan
    tokens = _tokens(sql)
    edits: list[tuple[int, int, str]] = []
    in_clause: set[int] = set()
    for clause in _clauses(sql, tokens):
        in_clause.add(clause.name_start)
        if embedded or (clause.templated and cluster is None):
            edits.append((clause.start, clause.end, _removed(sql, clause.start, clause.end)))
        elif clause.templated:
            edits.append((clause.name_start, clause.end, f"`{cluster}`"))
    for token in tokens:
        if token.kind != TEMPLATE or token.start in in_clause:
            continue
        if cluster is None:
            raise BadInput(f"SQL on line {_line_of(sql, token.start)} uses {sql[token.start:token.end]} but "
                           "clickhouse.cluster is not set",
                           hint="set clickhouse.cluster, or use {cluster} only in ON CLUSTER {cluster}")
        edits.append((token.start, token.end, f"'{cluster}'"))
    parts, done = [], 0
    for start, end, text in sorted(edits):
        parts += [sql[done:start], text]
        done = end
    return "".join(parts) + sql[done:]

"""What a migration's statements create, alter or drop: the tables, views and dictionaries they name.

The importer uses it to warn when an imported migration touches an object an existing migration also touches
(both ``CREATE TABLE IF NOT EXISTS events``: the second silently does nothing, and the next ``ALTER`` written for
it fails). The importer runs without a database, so this is not ClickHouse's parser: it is a small tokenizer over
``ops.migrations.sqlsplit``'s scanner (strings, quoted identifiers and comments are never mistaken for code), and
it reads only the head of each statement, up to its target names, for the forms that name a table, view or
dictionary:

* ``CREATE [OR REPLACE] [TEMPORARY] TABLE | VIEW | MATERIALIZED VIEW | LIVE VIEW | WINDOW VIEW | DICTIONARY
  [IF NOT EXISTS] name``, ``REPLACE TABLE name``, ``ATTACH … name`` (created);
* ``ALTER TABLE name``, ``TRUNCATE [TABLE] name``, ``EXCHANGE TABLES a AND b`` (altered);
* ``DROP | DETACH TABLE | VIEW | DICTIONARY [IF EXISTS] a[, b…]`` (dropped);
* ``RENAME TABLE | DICTIONARY a TO b[, c TO d…]`` (``a`` dropped, ``b`` created).

Temporary tables live for one session and are left out. Every other statement (``INSERT``, ``OPTIMIZE``,
``CREATE DATABASE``, ``SELECT``…) names nothing here. The integration tests check the names found against
``EXPLAIN AST`` on the engine for every statement of the test corpora.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from ops.migrations.sqlsplit import CODE, COMMENT, IDENTIFIER, STRING, _scan, split_statements


class Action(str, Enum):
    CREATED = "created"
    ALTERED = "altered"
    DROPPED = "dropped"


@dataclass(frozen=True)
class Touch:
    """One object a statement touches: what it does to it, and the name as written (database optional)."""

    action: Action
    database: str | None
    name: str

    @property
    def shown(self) -> str:
        return f"{self.database}.{self.name}" if self.database else self.name

    def same_object(self, other: "Touch") -> bool:
        """Same name, and the same database when both statements say which (unqualified: the current one)."""
        return self.name == other.name and (self.database is None or other.database is None
                                            or self.database == other.database)


# Code tokens: a word, a number, a `{…}` placeholder (chops' `{cluster}`, Go templates), or one punctuation mark.
_TOKEN = re.compile(r"\{\{.*?\}\}|\{[^{}]*\}|[A-Za-z_][A-Za-z0-9_$]*|\d[\w.]*|\S")
_HEAD_TOKENS = 64  # far more than any statement's head up to its last target name in a list


@dataclass(frozen=True)
class _Token:
    text: str
    quoted: bool  # a quoted identifier: a name, never a keyword

    def word(self) -> str:
        return "" if self.quoted else self.text.upper()


def _tokens(statement: str) -> list[_Token]:
    """The first tokens of ``statement``: comments skipped, quoted identifiers unquoted, strings kept whole."""
    tokens: list[_Token] = []
    for kind, begin, end in _scan(statement):
        if len(tokens) >= _HEAD_TOKENS:
            break
        text = statement[begin:end]
        if kind == COMMENT:
            continue
        if kind == IDENTIFIER:
            quote = text[0]
            tokens.append(_Token(text[1:-1].replace(quote * 2, quote).replace("\\" + quote, quote), True))
        elif kind == STRING:
            tokens.append(_Token(text, False))
        elif kind == CODE:
            tokens.extend(_Token(m.group(), False) for m in _TOKEN.finditer(text))
        else:  # a heredoc: a body, never a name
            tokens.append(_Token(text, False))
    return tokens[:_HEAD_TOKENS]


_NAME_START = re.compile(r"[A-Za-z_]")
_CREATE_KINDS = {"TABLE": 1, "DICTIONARY": 1, "VIEW": 1, "MATERIALIZED": 2, "LIVE": 2, "WINDOW": 2}


class _Reader:
    """A cursor over a statement's head tokens."""

    def __init__(self, tokens: list[_Token]):
        self.tokens, self.i = tokens, 0

    def peek(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.tokens[j].word() if j < len(self.tokens) else ""

    def take(self, *words: str) -> bool:
        """Consume ``words`` if they come next (keywords, case-insensitive)."""
        if all(self.peek(k) == w for k, w in enumerate(words)):
            self.i += len(words)
            return True
        return False

    def name(self) -> tuple[str | None, str] | None:
        """``[database.]name`` at the cursor, or None when a name does not come next."""
        first = self._part()
        if first is None:
            return None
        if self.peek() == "." and self.i + 1 < len(self.tokens):
            self.i += 1
            second = self._part()
            if second is not None:
                return first, second
        return None, first

    def _part(self) -> str | None:
        if self.i >= len(self.tokens):
            return None
        token = self.tokens[self.i]
        if token.quoted or _NAME_START.match(token.text):
            self.i += 1
            return token.text
        return None


def touches(statement: str) -> list[Touch]:
    """The tables, views and dictionaries one statement creates, alters or drops (see the module docstring)."""
    r = _Reader(_tokens(statement))
    verb = r.peek()
    r.i += 1
    if verb in ("CREATE", "ATTACH", "REPLACE"):
        return _created(r, replace=verb == "REPLACE")
    if verb == "ALTER":
        return _one(r, Action.ALTERED) if r.take("TABLE") else []
    if verb == "TRUNCATE":
        if r.take("TEMPORARY") or r.peek() in ("ALL", "DATABASE"):
            return []
        r.take("TABLE")
        r.take("IF", "EXISTS")
        return _one(r, Action.ALTERED)
    if verb in ("DROP", "DETACH"):
        if r.take("TEMPORARY") or not (r.take("TABLE") or r.take("VIEW") or r.take("DICTIONARY")):
            return []
        r.take("IF", "EXISTS")
        return _name_list(r, Action.DROPPED)
    if verb == "RENAME":
        return _renamed(r) if (r.take("TABLE") or r.take("DICTIONARY")) else []
    if verb == "EXCHANGE":
        if not (r.take("TABLES") or r.take("DICTIONARIES")):
            return []
        found = _one(r, Action.ALTERED)
        return found + _one(r, Action.ALTERED) if found and r.take("AND") else found
    return []


def _created(r: _Reader, replace: bool) -> list[Touch]:
    if not replace:
        r.take("OR", "REPLACE")
    if r.take("TEMPORARY"):
        return []
    width = _CREATE_KINDS.get(r.peek())
    if width is None or (width == 2 and r.peek(1) != "VIEW"):
        return []
    r.i += width
    r.take("IF", "NOT", "EXISTS")
    return _one(r, Action.CREATED)


def _one(r: _Reader, action: Action) -> list[Touch]:
    name = r.name()
    return [] if name is None else [Touch(action, *name)]


def _name_list(r: _Reader, action: Action) -> list[Touch]:
    found = []
    while True:
        name = r.name()
        if name is None:
            return found
        found.append(Touch(action, *name))
        if not r.take(","):
            return found


def _renamed(r: _Reader) -> list[Touch]:
    found = []
    while True:
        old = r.name()
        if old is None or not r.take("TO"):
            return found
        new = r.name()
        if new is None:
            return found
        found += [Touch(Action.DROPPED, *old), Touch(Action.CREATED, *new)]
        if not r.take(","):
            return found


def touches_of_sql(sql: str) -> list[Touch]:
    """Every object the statements of ``sql`` (a migration file) touch, in statement order, each once per action."""
    seen: list[Touch] = []
    for statement in split_statements(sql):
        for touch in touches(statement.text):
            if touch not in seen:
                seen.append(touch)
    return seen

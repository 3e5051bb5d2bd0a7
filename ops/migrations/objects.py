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

from ops.migrations.sqlsplit import CODE, COMMENT, IDENTIFIER, _scan, split_statements


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
    start: int = 0  # offset in the statement

    def word(self) -> str:
        return "" if self.quoted else self.text.upper()


def _tokens(statement: str, limit: int | None = _HEAD_TOKENS) -> list[_Token]:
    """The first ``limit`` tokens of ``statement`` (all with None): comments skipped, quoted identifiers unquoted,
    strings kept whole."""
    tokens: list[_Token] = []
    for kind, begin, end in _scan(statement):
        if limit is not None and len(tokens) >= limit:
            break
        text = statement[begin:end]
        if kind == COMMENT:
            continue
        if kind == IDENTIFIER:
            quote = text[0]
            tokens.append(_Token(text[1:-1].replace(quote * 2, quote).replace("\\" + quote, quote), True, begin))
        elif kind == CODE:
            tokens.extend(_Token(m.group(), False, begin + m.start()) for m in _TOKEN.finditer(text))
        else:  # a string, kept whole; a heredoc: a body, never a name
            tokens.append(_Token(text, False, begin))
    return tokens if limit is None else tokens[:limit]


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


# --- databases a statement names -----------------------------------------------------------------------------------
#
# A migration set written for one database often names it (`CREATE TABLE appdb.events`, `INSERT INTO appdb.daily
# SELECT … FROM appdb.events`), which works only where the database has that name. These read a whole statement, not
# only its head, and find the database part of every name in a place that takes a table, view or dictionary:
#
# * ``db.name`` after FROM, JOIN (not ARRAY JOIN, which takes columns), INTO, TABLE, VIEW, DICTIONARY, EXISTS,
#   TO (not in ALTER, where ``RENAME COLUMN n.a TO n.b`` renames a nested column), AS (``CREATE TABLE t AS db.src``),
#   the SYSTEM commands' REPLICA / MERGES / MOVES / FETCHES / SENDS / DISTRIBUTED, ON in GRANT and REVOKE
#   (``ON db.*``), AND in EXCHANGE, a statement's first word (``DESCRIBE db.t``, ``UPDATE db.t``, ``EXISTS db.t``),
#   and a comma after such a name (``DROP TABLE a.x, a.y``); FROM inside EXTRACT, TRIM, SUBSTRING, POSITION and
#   OVERLAY takes an expression and does not count;
# * ``CREATE | DROP | … DATABASE [IF [NOT] EXISTS] db``, ``RENAME DATABASE a TO b``, ``USE db``,
#   ``TABLES FROM|IN db``;
# * the database argument of the Distributed, Buffer, Merge and Dictionary engines and of the remote / cluster
#   table functions, written as a name or a string (``currentDatabase()`` is what a portable set writes there);
#   the dictionary name of dictGet* / dictHas / joinGet (``'db.dict'``); ``DB 'db'`` in a ClickHouse dictionary
#   source.
#
# ``alias.column`` is never taken for a database: a dotted name counts only in those places. A placeholder
# (``{{.DB}}.events``, ``${DB}.events``) names no database: it is filled from configuration.

_NAME_BEFORE = frozenset({"FROM", "JOIN", "INTO", "TABLE", "TABLES", "VIEW", "DICTIONARY", "DICTIONARIES", "EXISTS",
                          "TO", "AS", "REPLICA", "MERGES", "MOVES", "FETCHES", "SENDS", "DISTRIBUTED"})
_FIRST_WORDS = frozenset({"USE", "DESCRIBE", "DESC", "UPDATE", "EXISTS"})
_FROM_IS_AN_EXPRESSION = frozenset({"EXTRACT", "TRIM", "SUBSTRING", "POSITION", "OVERLAY"})
# Engines and table functions: the position of their database argument.
_DATABASE_ARGUMENT = {"DISTRIBUTED": 1, "BUFFER": 0, "MERGE": 0, "DICTIONARY": 0, "REMOTE": 1, "REMOTESECURE": 1,
                      "CLUSTER": 1, "CLUSTERALLREPLICAS": 1}
_DICTIONARY_FUNCTION = re.compile(r"DICTGET\w*|DICTHAS|DICTISIN|JOINGET\w*")
_SYSTEM_DATABASES = frozenset({"system", "information_schema"})


def _part(token: _Token) -> bool:
    """Whether ``token`` can be one part of a name: a quoted identifier or a bare word."""
    return token.quoted or bool(_NAME_START.match(token.text))


def _dotted(tokens: list[_Token], i: int) -> bool:
    """Whether ``db . name`` (or ``db . *``) starts at ``i``."""
    return (i + 2 < len(tokens) and _part(tokens[i]) and tokens[i + 1].text == "." and not tokens[i + 1].quoted
            and (_part(tokens[i + 2]) or tokens[i + 2].text == "*"))


def _string_value(token: _Token) -> str | None:
    """The value of a string token (``'appdb'`` -> ``appdb``), or None for anything else."""
    text = token.text
    if token.quoted or not text.startswith("'"):
        return None
    return re.sub(r"\\(.)", r"\1", text[1:-1].replace("''", "'"))


def databases_named(statement: str) -> list[tuple[str, int]]:
    """``(database, offset)`` for every place ``statement`` names a database explicitly (see above), in order."""
    tokens = _tokens(statement, limit=None)
    words = [t.word() for t in tokens]
    found: list[tuple[str, int]] = []
    stack: list[str] = []  # the function (or "") of each open parenthesis
    listed_until = -1  # index of the last token of a name in a table place: a comma right after it continues the list
    database_at = _database_statement(words)
    for i, token in enumerate(tokens):
        before = words[i - 1] if i else ""
        if token.text in ("(", ")") and not token.quoted:
            stack = stack + [before] if token.text == "(" else stack[:-1]
            if token.text == "(":
                found += _argument_database(tokens, i, before)
        elif _dotted(tokens, i) and _takes_a_name(words, i, stack, listed_until):
            found.append((tokens[i].text, token.start))
            listed_until = i + 2
        elif _part(token) and not _dotted(tokens, i) and (
                i == database_at or (words[0] == "RENAME" and database_at and before == "TO")
                or words[max(i - 2, 0):i] in (["TABLES", "FROM"], ["TABLES", "IN"])):
            found.append((token.text, token.start))
        elif before == "DB" and "CLICKHOUSE" in stack:
            value = _string_value(token)
            if value and "{" not in value:
                found.append((value, token.start))
    return found


def _database_statement(words: list[str]) -> int | None:
    """In ``CREATE | DROP | ATTACH | DETACH | RENAME | TRUNCATE | EXISTS | SHOW CREATE DATABASE [IF [NOT] EXISTS]
    db`` and ``USE db``: the index of ``db``."""
    if words[:1] == ["USE"]:
        return 1
    at = 2 if words[:2] == ["SHOW", "CREATE"] else 1
    if words[:1] not in (["CREATE"], ["DROP"], ["ATTACH"], ["DETACH"], ["RENAME"], ["TRUNCATE"], ["EXISTS"],
                         ["SHOW"]) or words[at:at + 1] != ["DATABASE"]:
        return None
    at += 1
    for optional in ("IF", "NOT", "EXISTS"):
        at += words[at:at + 1] == [optional]
    return at


def _takes_a_name(words: list[str], i: int, stack: list[str], listed_until: int) -> bool:
    """Whether the dotted name starting at token ``i`` is in a place that takes a table, view or dictionary."""
    before, verb = words[i - 1] if i else "", words[0]
    if i == 1 and verb in _FIRST_WORDS:
        return True
    if before == "," and listed_until == i - 2:
        return True
    if before == "JOIN":
        return i < 2 or words[i - 2] != "ARRAY"
    if before == "FROM":
        return not (stack and stack[-1] in _FROM_IS_AN_EXPRESSION)
    if before == "TO":
        return verb != "ALTER"
    if before == "ON":
        return verb in ("GRANT", "REVOKE")
    if before == "AND":
        return verb == "EXCHANGE"
    return before in _NAME_BEFORE


def _argument_database(tokens: list[_Token], open_at: int, function: str) -> list[tuple[str, int]]:
    """The database named by the argument of ``function(`` (at ``open_at``) that holds one, if any."""
    dictionary = bool(_DICTIONARY_FUNCTION.fullmatch(function))
    position = 0 if dictionary else _DATABASE_ARGUMENT.get(function)
    if position is None:
        return []
    argument, depth, index = [], 0, 0
    for token in tokens[open_at + 1:]:
        if token.text in "()," and not token.quoted:
            if token.text == ")" and depth == 0:
                break
            if token.text == "," and depth == 0:
                index += 1
                continue
            depth += {"(": 1, ")": -1}.get(token.text, 0)
        if index == position:
            argument.append(token)
        elif index > position:
            break
    if len(argument) == 3 and _dotted(argument, 0):
        return [(argument[0].text, argument[0].start)]
    if len(argument) != 1:
        return []  # currentDatabase(), REGEXP('…'), a placeholder: nothing hard-coded
    only = argument[0]
    value = _string_value(only)
    if dictionary:
        name = value or ""
        return [(name.split(".")[0], only.start)] if "." in name and "{" not in name else []
    if value is not None:
        return [(value, only.start)] if value and "{" not in value else []
    return [(only.text, only.start)] if _part(only) else []


def database_problems(statement: str, configured: str) -> list[tuple[int, str]]:
    """``(line, message)`` for each database other than ``configured`` that ``statement`` names explicitly, once per
    database at its first mention (line 1-based within ``statement``). ``system`` and ``information_schema`` are
    ClickHouse's own and never reported; nor is a placeholder (run this on the statement as written)."""
    problems, seen = [], set()
    for database, offset in databases_named(statement):
        if database in seen or database == configured or database.lower() in _SYSTEM_DATABASES:
            continue
        seen.add(database)
        problems.append((statement.count("\n", 0, offset) + 1,
                         f"names database {database}, but the configured database is {configured}: the statement "
                         f"works only where the database is called {database} (leave the name out, or use "
                         "currentDatabase() or a template variable)"))
    return problems

"""What a migration statement changes, read from ClickHouse's own parser, and whether that change is in effect:
for resuming and undoing a dirty migration only (the apply path parses nothing). A statement killed mid-way may
have taken effect without a journal record, and most rollback files list their statements in forward order.

* :func:`read_effects`: ``parseQueryToJSON`` of each statement as ``formatQuerySingleLine`` prints it (which drops
  an INSERT's inline rows, refused by the JSON form), all in one query, each text once per process. On chDB 26.9
  the tree names the query kind, database, table, each ALTER command with its column, index, projection or
  setting, ``IF [NOT] EXISTS``, the engine and the declared column types; ``EXPLAIN AST`` lacks index and
  projection names, ``IF EXISTS`` and DROP versus DETACH. ClickHouse before 26.8 has no ``parseQueryToJSON``:
  there, and for the nodes it cannot serialise (``DESCRIBE``, ``EXISTS``, ``UNDROP``), effects are ``None``.
* :func:`pair_undo`: which rollback statements reverse (same object, inverse change) statements that ran; newest
  first; :class:`Unpaired` when one reverses nothing it can see, cannot be read, or would also undo a statement
  that never ran, unless the two files mirror each other (position pairing).
* :func:`presence`: the catalog in one query: a table with the same engine and columns (types as ``toTypeName``
  prints them), a column with that type, an index or projection, a dropped or renamed thing gone. A statement
  that changes rows is never in effect (twice inserts twice); a MODIFY is not checked (again changes nothing).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, Sequence


class Change(str, Enum):
    CREATE = "create"
    DROP = "drop"
    RENAME = "rename"
    EXCHANGE = "exchange"
    MODIFY = "modify"
    INSERT = "insert"      # rows added
    DELETE = "delete"      # rows removed (DELETE, TRUNCATE, DROP PARTITION)
    UPDATE = "update"      # rows changed
    REBUILD = "rebuild"    # data rewritten in place (OPTIMIZE, MATERIALIZE …, CLEAR …): nothing to undo
    SET = "set"            # a session setting, a temporary table
    READ = "read"          # SELECT, SHOW, FREEZE: changes nothing
    OTHER = "other"        # parsed, but not a change chops models (SYSTEM …)


class What(str, Enum):
    DATABASE = "database"
    TABLE = "table"
    VIEW = "view"
    MATERIALIZED_VIEW = "materialized view"
    DICTIONARY = "dictionary"
    COLUMN = "column"
    INDEX = "index"
    PROJECTION = "projection"
    CONSTRAINT = "constraint"
    SETTING = "setting"
    PROPERTY = "property"  # a table's TTL, ORDER BY, SAMPLE BY, comment, query …: ``name`` says which
    ROWS = "rows"
    NOTHING = "nothing"


# Tables, views and dictionaries share one name space: DROP TABLE removes a view as well.
_TABLE_LIKE = {What.TABLE, What.VIEW, What.MATERIALIZED_VIEW, What.DICTIONARY}
NEUTRAL = {Change.SET, Change.READ, Change.REBUILD}  # nothing to undo
ROW_CHANGES = {Change.INSERT, Change.DELETE, Change.UPDATE}


@dataclass(frozen=True)
class Effect:
    """One change a statement makes. ``database`` is resolved (the current one when the statement names none)."""

    change: Change
    what: What
    database: str
    table: str = ""
    name: str = ""                          # the column, index, projection, setting or property
    to: tuple[str, str, str] | None = None  # RENAME / EXCHANGE: the other (database, table, name)
    type: str | None = field(default=None, compare=False)  # a column's type as written
    guarded: bool = field(default=False, compare=False)    # IF [NOT] EXISTS
    replace: bool = field(default=False, compare=False)    # CREATE OR REPLACE
    engine: str | None = field(default=None, compare=False)
    columns: tuple[tuple[str, str | None], ...] = field(default=(), compare=False)  # CREATE TABLE (name, type)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return ("table" if self.what in _TABLE_LIKE else self.what.value, self.database, self.table, self.name)

    @property
    def to_key(self) -> tuple[str, str, str, str] | None:
        return None if self.to is None else (self.key[0], *self.to)

    def describe(self) -> str:
        """``adds column env String to a``, ``drops table events``, ``inserts rows into t`` …"""
        obj = self.database if self.what is What.DATABASE else self.table
        fixed = {Change.INSERT: f"inserts rows into {obj}", Change.DELETE: f"deletes rows of {obj}",
                 Change.UPDATE: f"updates rows of {obj}", Change.REBUILD: f"rewrites the data of {obj}",
                 Change.SET: "sets a session setting", Change.READ: "reads only",
                 Change.OTHER: f"does something to {obj or 'the server'} chops does not model"}
        if self.change in fixed:
            return fixed[self.change]
        verb = {Change.CREATE: "adds" if self.name else "creates", Change.DROP: "drops", Change.RENAME: "renames",
                Change.EXCHANGE: "exchanges", Change.MODIFY: "modifies"}[self.change]
        other = (" and " if self.change is Change.EXCHANGE else " to ") + (self.to[2] or self.to[1] or self.to[0]) \
            if self.to else ""
        if not self.name:
            return f"{verb} {self.what.value} {obj}{other}"
        typed = f" {self.type}" if self.type and self.change is Change.CREATE else ""
        where = {Change.CREATE: "to", Change.DROP: "from"}.get(self.change, "of")
        return f"{verb} {self.what.value} {self.name}{typed} {where} {obj}{other}"


Effects = tuple[Effect, ...]

# --- reading statements -----------------------------------------------------------------------------------------

_trees: dict[str, dict | None] = {}  # statement text -> its JSON tree (None: the engine cannot serialise it)

_PARSE_SQL = ("SELECT i, if(f IS NULL, NULL, parseQueryToJSON(f)) AS tree FROM (SELECT arrayJoin(arrayEnumerate(s)) "
              "AS i, formatQuerySingleLineOrNull(s[i]) AS f FROM (SELECT {s:Array(String)} AS s)) ORDER BY i")


def read_effects(db, statements: Sequence[str]) -> list[Effects | None]:
    """What each statement changes (``None``: unknown), its database resolved against ``db``'s. One query parses
    every statement not parsed before in this process; a statement the JSON form refuses is parsed alone."""
    todo = list(dict.fromkeys(s for s in statements if s not in _trees))
    if todo:
        try:
            for i, tree in db.query(_PARSE_SQL, {"s": todo}).result_rows:
                _trees[todo[i - 1]] = json.loads(tree) if tree else None
        except Exception:
            _parse_one_by_one(db, todo)
    return [None if _trees.get(s) is None else effects_of(_trees[s], db.name) for s in statements]


def _parse_one_by_one(db, statements: list[str]) -> None:
    for n, text in enumerate(statements):
        try:
            tree = db.scalar("SELECT parseQueryToJSON(formatQuerySingleLine({q:String}))", {"q": text})
            _trees[text] = json.loads(tree) if tree else None
        except Exception as exc:
            _trees[text] = None
            if re.search(r"UNKNOWN_FUNCTION|Unknown function", str(exc.__cause__ or exc)):
                _trees.update(dict.fromkeys(statements[n:]))  # ClickHouse < 26.8: no statement can be read
                return


def _ident(node: Any) -> str:
    """A name that the tree gives as text, or as an ``Identifier`` node."""
    return (node.get("name") or "") if isinstance(node, dict) else (node or "")


def effects_of(tree: dict, current: str) -> Effects:
    """The changes of one statement, from its ``parseQueryToJSON`` tree; ``current``: the database it runs in."""
    kind = tree.get("type", "")
    reader = _READERS.get(kind)
    if reader is not None:
        return tuple(reader(tree, current))
    if kind.startswith(("Select", "Show", "Explain", "Describe", "Exists", "Watch")):
        return (Effect(Change.READ, What.NOTHING, current),)
    if kind == "SetQuery":
        return (Effect(Change.SET, What.NOTHING, current),)
    return (Effect(Change.OTHER, What.TABLE, _ident(tree.get("database")) or current, _ident(tree.get("table"))),)


def _create(t: dict, cur: str) -> list[Effect]:
    db, name = t.get("database") or cur, t.get("table") or ""
    if t.get("is_temporary"):
        return [Effect(Change.SET, What.NOTHING, cur)]
    if not name:
        return [Effect(Change.CREATE, What.DATABASE, db, guarded=bool(t.get("if_not_exists")))]
    what = (What.DICTIONARY if t.get("is_dictionary") else What.MATERIALIZED_VIEW if t.get("is_materialized_view")
            else What.VIEW if t.get("is_ordinary_view") else What.TABLE)
    engine = ((t.get("storage") or {}).get("engine") or {}).get("name")
    columns = ((t.get("columns_list") or {}).get("columns") or {}).get("children") or []
    filled = (what is What.TABLE and t.get("select")) or t.get("is_populate")  # AS SELECT, POPULATE: rows too
    return [Effect(Change.CREATE, what, db, name, guarded=bool(t.get("if_not_exists")), engine=engine,
                   replace=bool(t.get("create_or_replace") or t.get("replace_table") or t.get("replace_view")),
                   columns=tuple(c for col in columns for c in _declared(col)))] \
        + ([Effect(Change.INSERT, What.ROWS, db, name)] if filled else [])


def _declared(column: dict) -> list[tuple[str, str | None]]:
    """A declared column as ``system.columns`` will list it: a ``Nested`` one as its ``Array`` sub-columns."""
    node = column.get("data_type")
    if isinstance(node, dict) and node.get("name") == "Nested":
        parts = (node.get("arguments") or {}).get("children") or []
        return [(f"{column['name']}.{p.get('name')}", f"Array({_type_text(p.get('name_type'))})") for p in parts]
    return [(column.get("name", ""), _type_text(node))]


def _drop(t: dict, cur: str) -> list[Effect]:
    listed = ((t.get("database_and_tables") or {}).get("children")) or []
    names = ([(p["name_parts"][0], p["name_parts"][-1]) if p.get("name_parts") else ("", p.get("name", ""))
              for p in listed] or [(t.get("database") or "", t.get("table") or "")])
    if t.get("kind") == "Truncate":
        return [Effect(Change.DELETE, What.ROWS, db or cur, table) if table
                else Effect(Change.OTHER, What.DATABASE, db or cur) for db, table in names]
    what = What.DICTIONARY if t.get("is_dictionary") else What.VIEW if t.get("is_view") else What.TABLE
    return [Effect(Change.DROP, what if table else What.DATABASE, db or cur, table, guarded=bool(t.get("if_exists")))
            for db, table in names]


def _rename(t: dict, cur: str) -> list[Effect]:
    found = []
    for e in t.get("elements") or []:
        if t.get("database") is True:
            found.append(Effect(Change.RENAME, What.DATABASE, e.get("from_database", ""),
                                to=(e.get("to_database", ""), "", "")))
            continue
        what = What.DICTIONARY if t.get("dictionary") else What.TABLE
        found.append(Effect(Change.EXCHANGE if t.get("exchange") else Change.RENAME, what,
                            e.get("from_database") or cur, e.get("from_table", ""),
                            to=(e.get("to_database") or cur, e.get("to_table", ""), ""),
                            guarded=bool(e.get("if_exists"))))
    return found


def _on_table(change: Change, what: What):
    """A reader of a statement changing one part of a table: its rows (INSERT, DELETE …), an index (CREATE INDEX)."""
    def read(t: dict, cur: str) -> list[Effect]:
        table = _ident(t.get("table"))
        if not table:  # INSERT INTO FUNCTION …
            return [Effect(Change.OTHER, What.TABLE, cur)]
        return [Effect(change, what, _ident(t.get("database")) or cur, table, _ident(t.get("index_name")),
                       guarded=bool(t.get("if_not_exists") or t.get("if_exists")))]
    return read


def _alter(t: dict, cur: str) -> list[Effect]:
    db, table = t.get("database") or cur, t.get("table") or ""
    commands = (t.get("command_list") or {}).get("children") or []
    if t.get("alter_object") == "DATABASE":
        return [Effect(Change.MODIFY, What.PROPERTY, db, "", c.get("command_type", "").lower()) for c in commands]
    return [e for c in commands for e in _alter_command(c, db, table)]


# ALTER commands that are one change to one named part of a table: command -> (change, what, field naming it)
_PARTS = {
    "ADD_COLUMN": (Change.CREATE, What.COLUMN, "col_decl"), "DROP_COLUMN": (Change.DROP, What.COLUMN, "column"),
    "MODIFY_COLUMN": (Change.MODIFY, What.COLUMN, "col_decl"), "COMMENT_COLUMN": (Change.MODIFY, What.COLUMN, "column"),
    "ADD_INDEX": (Change.CREATE, What.INDEX, "index_decl"), "DROP_INDEX": (Change.DROP, What.INDEX, "index"),
    "ADD_PROJECTION": (Change.CREATE, What.PROJECTION, "projection_decl"),
    "DROP_PROJECTION": (Change.DROP, What.PROJECTION, "projection"),
    "ADD_CONSTRAINT": (Change.CREATE, What.CONSTRAINT, "constraint_decl"),
    "DROP_CONSTRAINT": (Change.DROP, What.CONSTRAINT, "constraint"),
}
_PROPERTIES = {"MODIFY_TTL": "ttl", "REMOVE_TTL": "ttl", "MODIFY_ORDER_BY": "order by", "MODIFY_SAMPLE_BY": "sample by",
               "REMOVE_SAMPLE_BY": "sample by", "MODIFY_QUERY": "query", "MODIFY_REFRESH": "refresh",
               "MODIFY_COMMENT": "comment", "MODIFY_SQL_SECURITY": "sql security"}
_ROW_COMMANDS = {"DELETE": Change.DELETE, "UPDATE": Change.UPDATE, "DROP_PARTITION": Change.DELETE,
                 "DROP_DETACHED_PARTITION": Change.DELETE, "FORGET_PARTITION": Change.DELETE,
                 "ATTACH_PARTITION": Change.INSERT, "REPLACE_PARTITION": Change.INSERT,
                 "FETCH_PARTITION": Change.INSERT, "MOVE_PARTITION": Change.DELETE}


def _alter_command(c: dict, db: str, table: str) -> list[Effect]:
    kind = c.get("command_type", "")
    if c.get("clear_column") or c.get("clear_index") or c.get("clear_projection") or c.get("clear_statistics") \
            or kind.startswith(("MATERIALIZE_", "APPLY_", "REWRITE_")):
        return [Effect(Change.REBUILD, What.ROWS, db, table)]
    if kind in _PARTS:
        change, what, key = _PARTS[kind]
        node = c.get(key) or {}
        typed = _type_text(node.get("data_type")) if key == "col_decl" else None
        return [Effect(change, what, db, table, _ident(node), type=typed,
                       guarded=bool(c.get("if_exists") or c.get("if_not_exists")))]
    if kind == "RENAME_COLUMN":
        return [Effect(Change.RENAME, What.COLUMN, db, table, _ident(c.get("column")),
                       to=(db, table, _ident(c.get("rename_to"))), guarded=bool(c.get("if_exists")))]
    if kind in ("MODIFY_SETTING", "RESET_SETTING"):
        names = ([x.get("name", "") for x in (c.get("settings_changes") or {}).get("changes") or []]
                 + [_ident(x) for x in (c.get("settings_resets") or {}).get("children") or []])
        return [Effect(Change.MODIFY, What.SETTING, db, table, n) for n in names]
    if kind in _PROPERTIES:
        return [Effect(Change.MODIFY, What.PROPERTY, db, table, _PROPERTIES[kind])]
    if kind in _ROW_COMMANDS:
        moved = [Effect(Change.INSERT, What.ROWS, db, c["to_table"])] if c.get("to_table") else []  # MOVE PARTITION
        return [Effect(_ROW_COMMANDS[kind], What.ROWS, db, table)] + moved
    if kind.startswith(("FREEZE", "UNFREEZE")):
        return [Effect(Change.READ, What.NOTHING, db, table)]
    return [Effect(Change.OTHER, What.TABLE, db, table, kind.lower())]


_READERS = {
    "CreateQuery": _create, "DropQuery": _drop, "RenameQuery": _rename, "AlterQuery": _alter,
    "InsertQuery": _on_table(Change.INSERT, What.ROWS), "DeleteQuery": _on_table(Change.DELETE, What.ROWS),
    "UpdateQuery": _on_table(Change.UPDATE, What.ROWS), "OptimizeQuery": _on_table(Change.REBUILD, What.ROWS),
    "CreateIndexQuery": _on_table(Change.CREATE, What.INDEX), "DropIndexQuery": _on_table(Change.DROP, What.INDEX),
}


def _quote(text: Any) -> str:
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _type_text(node: Any) -> str | None:
    """A data type's text from its tree (``Decimal(10, 2)``, ``Tuple(a String)``); None when it has none (an
    ``ALIAS`` column) or is of a form not modelled here."""
    if not isinstance(node, dict):
        return None
    kind = node.get("type")
    if kind == "EnumDataType":
        values = ", ".join(f"{_quote(v.get('name'))} = {v.get('value')}" for v in node.get("values", []))
        return f"{node.get('name')}({values})"
    if kind in ("DataType", "TupleDataType"):
        args = [_type_text(a) for a in (node.get("arguments") or {}).get("children") or []]
        if any(a is None for a in args):
            return None
        names = node.get("element_names")
        if names:
            args = [f"`{n}` {a}" for n, a in zip(names, args)]
        return node.get("name", "") + (f"({', '.join(args)})" if "arguments" in node else "")
    if kind == "NameTypePair":
        inner = _type_text(node.get("name_type"))
        return None if inner is None else f"`{node.get('name')}` {inner}"
    if kind == "Literal":
        value = node.get("value") or {}
        return _quote(value.get("value")) if value.get("field_type") == "String" else str(value.get("value"))
    if kind == "Identifier":
        return node.get("name")
    return None


# --- pairing an undo ------------------------------------------------------------------------------------------------

def reverses(r: Effect, a: Effect) -> bool:
    """Whether change ``r`` (of a rollback statement) undoes change ``a`` (of an applied statement)."""
    pair = (a.change, r.change)
    if pair in ((Change.CREATE, Change.DROP), (Change.DROP, Change.CREATE)):
        return r.key == a.key
    if pair == (Change.CREATE, Change.CREATE):  # CREATE OR REPLACE VIEW v AS <new> / … AS <old>
        return a.replace and r.replace and r.key == a.key
    if pair == (Change.RENAME, Change.RENAME):
        return r.key == a.to_key and r.to_key == a.key
    if pair == (Change.EXCHANGE, Change.EXCHANGE):
        return {r.key, r.to_key} == {a.key, a.to_key}
    if pair in ((Change.INSERT, Change.DELETE), (Change.DELETE, Change.INSERT), (Change.MODIFY, Change.MODIFY),
                (Change.UPDATE, Change.UPDATE)):
        return r.key == a.key
    return False


class Unpaired(Exception):
    """The rollback statements cannot be paired with the applied ones; ``reasons``: why, one per statement."""

    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass
class Undo:
    """The rollback statements to run (indices, in order), how they were paired, and the statements that ran
    whose change no chosen rollback statement undoes (it stays)."""

    order: list[int]
    by: str  # "effects" | "position"
    unreversed: list[int] = field(default_factory=list)


def _neutral(effects: Effects) -> bool:
    return all(e.change in NEUTRAL for e in effects)


def pair_undo(applied: Sequence[Effects | None], rollback: Sequence[Effects | None], ran: Iterable[int]) -> Undo:
    """Which rollback statements undo the applied statements that ran (indices in ``ran``), newest applied first.
    A rollback statement runs when it reverses one that ran; one that reverses only statements that did not run
    is left out. Session settings (``SET``) come first; reads and rebuilds are left out. Raises :class:`Unpaired`
    unless every other rollback statement can be paired, or the two files mirror each other (position pairing)."""
    ran = set(ran)
    newest: dict[int, int] = {}  # rollback statement -> the newest statement that ran which it reverses
    settings, problems = [], []
    for j, effects in enumerate(rollback):
        if effects is None:
            problems.append(f"rollback statement {j + 1}: chops cannot read what it changes")
            continue
        if _neutral(effects):
            settings += [j] if any(e.change is Change.SET for e in effects) else []
            continue
        needed, harmful = [], []
        for r in (e for e in effects if e.change not in NEUTRAL):
            targets = {i for i, a in enumerate(applied) if a and any(reverses(r, x) for x in a)}
            if not targets:
                problems.append(f"rollback statement {j + 1} {r.describe()}, and no statement of the migration "
                                "does the reverse")
                break
            if targets & ran:
                needed.append(max(targets & ran))
            elif not r.guarded:
                harmful.append((r, min(targets)))
        else:
            if needed and harmful:
                r, i = harmful[0]
                problems.append(f"rollback statement {j + 1} also {r.describe()}, undoing statement {i + 1}, "
                                "which did not run")
            elif needed:
                newest[j] = max(needed)
    if problems:
        order = _by_position(applied, rollback, ran)
        if order is None:
            raise Unpaired(problems)
        return Undo(order, "position")
    order = sorted(newest, key=lambda j: (-newest[j], j))
    return Undo(settings + order if order else [], "effects", _unreversed(applied, rollback, ran, order))


def _by_position(applied, rollback, ran: set[int]) -> list[int] | None:
    """Rollback statement ``n-1-i`` for each statement ``i`` that ran, newest first, when the files mirror each
    other: each rollback statement reverses its mirror, or both only read or set, or both are changes chops does
    not model (``OTHER``). A statement that cannot be read mirrors nothing."""
    n = len(applied)
    if len(rollback) != n:
        return None
    for i, a in enumerate(applied):
        r = rollback[n - 1 - i]
        if a is None or r is None:
            return None
        if not (any(reverses(y, x) for x in a for y in r) or (_neutral(a) and _neutral(r))
                or all(e.change is Change.OTHER for e in a + r)):
            return None
    return [n - 1 - i for i in sorted(ran, reverse=True)]


def _unreversed(applied, rollback, ran: set[int], order: list[int]) -> list[int]:
    """The statements that ran and changed the schema, whose change no rollback statement reverses and whose table
    no chosen rollback statement drops."""
    dropped = {(r.database, r.table) for j in order for r in rollback[j] or ()
               if r.change is Change.DROP and r.what in _TABLE_LIKE}
    every = [r for effects in rollback for r in effects or ()]
    found = []
    for i in sorted(ran):
        changes = [a for a in applied[i] or () if a.change not in NEUTRAL | ROW_CHANGES]
        if changes and not any(reverses(r, a) for a in changes for r in every) \
                and not all((a.database, a.table) in dropped for a in changes):
            found.append(i)
    return found


def listing(mid: str, path: str, texts: Sequence[str], applied: Sequence[Effects | None],
            rollback: Sequence[Effects | None], ran: Iterable[int]) -> list[str]:
    """The lines shown when an undo cannot be paired: which statements ran, then each rollback statement, numbered
    as ``--statements`` takes them, with the statements it undoes."""
    ran = set(ran)
    numbers = ", ".join(str(i + 1) for i in sorted(ran))
    lines = [f"{mid} is dirty: statement{'s' * (len(ran) != 1)} {numbers} of {len(applied)} ran; "
             f"the statements of {path}:"]
    for j, (text, effects) in enumerate(zip(texts, rollback)):
        targets = sorted({i for i, a in enumerate(applied) if a and effects
                          and any(reverses(r, x) for r in effects for x in a)})
        note = ("chops cannot read it" if effects is None else "changes nothing to undo" if _neutral(effects)
                else ", ".join(f"undoes statement {i + 1} ({'ran' if i in ran else 'did not run'})" for i in targets)
                or "undoes no statement chops can see")
        short = " ".join(text.split())
        lines.append(f"  {j + 1}. {short[:100]}{'…' if len(short) > 100 else ''}  -- {note}")
    return lines

# --- in effect? -----------------------------------------------------------------------------------------------------

class Presence(str, Enum):
    IN_EFFECT = "in effect"
    PARTLY = "partly in effect"
    ABSENT = "not in effect"
    ROWS = "changes rows"       # never counted as in effect: running it twice inserts twice
    UNKNOWN = "cannot tell"


_CHECKED = {Change.CREATE, Change.DROP, Change.RENAME}
_OF_TABLES = "WHERE has({tables:Array(String)}, concat(database, '.', table))"  # a dot in a name: filtered after
_CATALOG = {
    "database": "SELECT 'database' AS kind, name AS database, '' AS table, '' AS name, engine AS detail "
                "FROM system.databases WHERE has({dbs:Array(String)}, name)",
    "table": f"SELECT 'table', database, name, '', engine FROM system.tables {_OF_TABLES.replace('table)', 'name)')}",
    "column": f"SELECT 'column', database, table, name, type FROM system.columns {_OF_TABLES}",
    "index": f"SELECT 'index', database, table, name, '' FROM system.data_skipping_indices {_OF_TABLES}",
    "projection": f"SELECT 'projection', database, table, name, '' FROM system.projections {_OF_TABLES}",
}
_VIEW_ENGINES = {What.VIEW: "View", What.MATERIALIZED_VIEW: "MaterializedView", What.DICTIONARY: "Dictionary"}
_canonical: dict[str, str | None] = {}  # a type as written -> as toTypeName prints it


def presence(db, effects: Effects | None) -> tuple[Presence, str]:
    """Whether a statement's changes are all in effect in ``db``'s catalog now, and why (for a message)."""
    if effects is None:
        return Presence.UNKNOWN, "chops cannot read what it changes"
    if any(e.change in ROW_CHANGES for e in effects):
        return Presence.ROWS, "it changes rows, which chops never counts as done"
    if not effects or any(e.change not in _CHECKED or e.what is What.CONSTRAINT for e in effects):
        return Presence.UNKNOWN, "not a change chops checks in the catalog"
    try:
        found = [_Catalog.read(db, effects).check(e) for e in effects]
    except Exception as exc:  # an older server without one of the system tables: cannot tell
        return Presence.UNKNOWN, f"the catalog could not be read ({exc})"
    verdicts = {ok for ok, _ in found}
    reasons = "; ".join(why for _, why in found)
    return (Presence.UNKNOWN if None in verdicts else Presence.IN_EFFECT if verdicts == {True}
            else Presence.ABSENT if verdicts == {False} else Presence.PARTLY), reasons


def _normal_type(text: str) -> str:
    return re.sub(r"\s*([(),])\s*", r"\1", " ".join(text.split()))


def canonical_types(db, types: Iterable[str]) -> dict[str, str | None]:
    """Each type as ``toTypeName`` prints it (``INT`` is ``Int32``, ``Decimal(10,2)`` is ``Decimal(10, 2)``), as
    ``system.columns`` lists it; None for a type the engine does not take. One query for the new ones (the
    function takes a constant only: one parameter each); one each when a type fails them all."""
    def ask(batch: list[str]) -> None:
        sql = "SELECT " + ", ".join(f"toTypeName(defaultValueOfTypeName({{t{i}:String}}))" for i in range(len(batch)))
        row = db.query(sql, {f"t{i}": t for i, t in enumerate(batch)}).result_rows[0]
        _canonical.update((t, _normal_type(n)) for t, n in zip(batch, row))

    todo = [t for t in dict.fromkeys(types) if t not in _canonical]
    try:
        if todo:
            ask(todo)
    except Exception:  # one type the engine refuses fails the query: ask one by one
        for t in todo:
            try:
                ask([t])
            except Exception:
                _canonical[t] = None
    return {t: _canonical.get(t) for t in types}


@dataclass
class _Catalog:
    """What the catalog holds of the objects some effects name: read in one query."""

    databases: set[str]
    tables: dict[tuple[str, str], str]                  # (database, table) -> engine
    columns: dict[tuple[str, str], dict[str, str]]      # (database, table) -> {column: type}
    parts: set[tuple[str, str, str, str]]               # (kind, database, table, name): indices, projections
    types: dict[str, str | None]                        # declared type -> canonical

    @classmethod
    def read(cls, db, effects: Effects) -> "_Catalog":
        tables = sorted({f"{e.database}.{e.table}" for e in effects if e.table}
                        | {f"{e.to[0]}.{e.to[1]}" for e in effects if e.to and e.to[1]})
        kinds = {"database", "table", "column"}
        kinds |= {e.what.value for e in effects if e.what in (What.INDEX, What.PROJECTION)}
        sql = " UNION ALL ".join(_CATALOG[k] for k in _CATALOG if k in kinds)
        dbs = sorted({e.database for e in effects} | {e.to[0] for e in effects if e.to})
        found = cls(set(), {}, {}, set(), {})
        for kind, database, table, name, detail in db.query(sql, {"dbs": dbs, "tables": tables}).result_rows:
            if kind == "database":
                found.databases.add(database)
            elif kind == "table":
                found.tables[(database, table)] = detail
            elif kind == "column":
                found.columns.setdefault((database, table), {})[name] = _normal_type(detail)
            else:
                found.parts.add((kind, database, table, name))
        declared = [t for e in effects for t in [e.type, *(ct for _, ct in e.columns)] if t]
        found.types = canonical_types(db, declared) if declared else {}
        return found

    def has(self, what: What, database: str, table: str, name: str = "") -> bool:
        if what is What.DATABASE:
            return database in self.databases
        if what in _TABLE_LIKE:
            return (database, table) in self.tables
        if what is What.COLUMN:
            return name in self.columns.get((database, table), {})
        return (what.value, database, table, name) in self.parts

    def same_type(self, declared: str | None, actual: str) -> bool:
        return declared is None or (self.types.get(declared) or _normal_type(declared)) == actual

    def check(self, e: Effect) -> tuple[bool | None, str]:
        """Whether change ``e`` is in effect (None: cannot tell), and why."""
        shown = e.describe()
        if e.change is Change.RENAME and e.to:
            done = self.has(e.what, *e.to) and not self.has(e.what, e.database, e.table, e.name)
            return done, f"{shown}: {'done' if done else 'not done'}"
        present = self.has(e.what, e.database, e.table, e.name)
        if e.change is Change.DROP:
            return not present, f"{shown}: {'already gone' if not present else 'still there'}"
        if e.replace:
            return None, f"{shown}: a replacement is never checked"
        if not present:
            return False, f"{shown}: not there"
        if e.what is What.COLUMN:
            actual = self.columns[(e.database, e.table)][e.name]
            same = self.same_type(e.type, actual)
            return same, f"{shown}: {'there' if same else 'there with type ' + actual}"
        if e.what in _TABLE_LIKE:
            return self._same_table(e)
        return True, f"{shown}: there"

    def _same_table(self, e: Effect) -> tuple[bool, str]:
        shown, engine = e.describe(), self.tables[(e.database, e.table)]
        wanted = _VIEW_ENGINES.get(e.what, e.engine)
        if wanted and engine != wanted:
            return False, f"{shown}: there, but as {engine}"
        if not e.columns:
            return True, f"{shown}: there (columns not compared: the statement lists none)"
        actual = self.columns.get((e.database, e.table), {})
        differ = [n for n, t in e.columns if n not in actual or not self.same_type(t, actual[n])]
        differ += [n for n in actual if n not in dict(e.columns)]
        if differ:
            return False, f"{shown}: there, but column {differ[0]} differs"
        return True, f"{shown}: there with the same engine and columns"


"""Pairing an undo from statement effects (pure: no engine). What the engine's parser gives is tested in
tests/integration/test_migration_effects.py; the trees here are copies of what chDB 26.9 printed."""

import pytest

from ops.migrations.effects import Change, Effect, Unpaired, What, effects_of, pair_undo, reverses

DB = "app"


def add(table, column="env", guarded=False):
    return (Effect(Change.CREATE, What.COLUMN, DB, table, column, type="String", guarded=guarded),)


def drop(table, column="env", guarded=False):
    return (Effect(Change.DROP, What.COLUMN, DB, table, column, guarded=guarded),)


def table(change, name, what=What.TABLE, **kw):
    return (Effect(change, what, DB, name, **kw),)


def rows(change, name):
    return (Effect(change, What.ROWS, DB, name),)


READ = (Effect(Change.READ, What.NOTHING, DB),)
SET = (Effect(Change.SET, What.NOTHING, DB),)
OTHER = (Effect(Change.OTHER, What.TABLE, DB, "t", "stop_merges"),)
UP = [add("a"), add("b"), add("c")]


@pytest.mark.parametrize("down, ran, order", [
    ([drop("a"), drop("b"), drop("c")], {0, 1}, [1, 0]),   # forward-order downs
    ([drop("c"), drop("b"), drop("a")], {0, 1}, [1, 2]),   # reverse-order downs
    ([drop("b"), drop("c"), drop("a")], {0, 1, 2}, [1, 0, 2]),  # any order: newest applied first
    ([drop("a"), drop("b"), drop("c")], {0}, [0]),
    ([drop("a"), drop("b"), drop("c")], set(), []),
], ids=["forward", "reverse", "shuffled", "one ran", "none ran"])
def test_undo_pairs_by_effect_in_any_order(down, ran, order):
    undo = pair_undo(UP, down, ran)
    assert (undo.order, undo.by) == (order, "effects")


def test_settings_come_first_reads_are_left_out_and_guarded_drops_of_what_never_ran_are_harmless():
    down = [READ, drop("a"), SET, (drop("b")[0], drop("c", guarded=True)[0])]
    assert pair_undo(UP, down, {0, 1}).order == [2, 3, 1]


def test_a_rollback_statement_that_would_undo_a_statement_that_never_ran_is_refused():
    with pytest.raises(Unpaired, match="rollback statement 1 also drops column env from c, undoing statement 3"):
        pair_undo(UP, [(drop("b")[0], drop("c")[0]), drop("a")], {0, 1})


def test_a_rollback_statement_that_reverses_nothing_is_refused_unless_the_files_mirror():
    up = [table(Change.CREATE, "t"), OTHER]
    with pytest.raises(Unpaired, match="rollback statement 2 inserts rows into t, and no statement"):
        pair_undo(up, [table(Change.DROP, "t"), rows(Change.INSERT, "t")], {0, 1})
    mirrored = pair_undo(up, [OTHER, table(Change.DROP, "t")], {0, 1})  # SYSTEM … mirrors SYSTEM …
    assert (mirrored.order, mirrored.by) == ([0, 1], "position")
    with pytest.raises(Unpaired, match="cannot read"):
        pair_undo([None, add("a")], [drop("a"), None], {0, 1})  # unreadable statements mirror nothing


def test_what_reverses_what():
    assert reverses(table(Change.DROP, "v", What.VIEW)[0], table(Change.CREATE, "v", What.MATERIALIZED_VIEW)[0])
    renamed = Effect(Change.RENAME, What.TABLE, DB, "events", to=(DB, "events_old", ""))
    back = Effect(Change.RENAME, What.TABLE, DB, "events_old", to=(DB, "events", ""))
    assert reverses(back, renamed) and not reverses(renamed, renamed)
    assert reverses(rows(Change.DELETE, "t")[0], rows(Change.INSERT, "t")[0])
    assert reverses(table(Change.CREATE, "v", What.VIEW, replace=True)[0],
                    table(Change.CREATE, "v", What.VIEW, replace=True)[0])
    assert not reverses(table(Change.CREATE, "v")[0], table(Change.CREATE, "v")[0])
    assert not reverses(drop("a")[0], add("a", "other")[0])
    assert not reverses(Effect(Change.DROP, What.COLUMN, "elsewhere", "a", "env"), add("a")[0])


def test_statements_that_ran_and_stay_are_named():
    up = [table(Change.CREATE, "t"), add("t", "x"), add("existing", "y")]
    undo = pair_undo(up, [table(Change.DROP, "t")], {0, 1, 2})
    assert undo.order == [0] and undo.unreversed == [2]  # t's column goes with t; existing keeps y


ALTER = {"type": "AlterQuery", "database": "", "table": "a", "alter_object": "TABLE", "command_list": {
    "type": "ExpressionList", "children": [
        {"type": "AlterCommand", "command_type": "DROP_COLUMN", "if_exists": True,
         "column": {"type": "Identifier", "name": "env"}},
        {"type": "AlterCommand", "command_type": "ADD_COLUMN", "if_not_exists": False, "col_decl": {
            "type": "ColumnDeclaration", "name": "t", "data_type": {
                "type": "DataType", "name": "Array", "arguments": {"type": "ExpressionList", "children": [
                    {"type": "TupleDataType", "name": "Tuple", "element_names": ["x", "y"], "arguments": {
                        "type": "ExpressionList", "children": [
                            {"type": "DataType", "name": "DateTime64", "arguments": {"type": "ExpressionList",
                             "children": [{"type": "Literal", "value": {"field_type": "UInt64", "value": 3}},
                                          {"type": "Literal", "value": {"field_type": "String", "value": "UTC"}}]}},
                            {"type": "EnumDataType", "name": "Enum8", "values": [{"name": "a'b", "value": 1}]}]}}]}}}},
        {"type": "AlterCommand", "command_type": "CLEAR_COLUMN_NO_SUCH_KIND"}]}}


def test_effects_of_an_alter_tree():
    dropped, added, unknown = effects_of(ALTER, DB)
    assert (dropped.change, dropped.what, dropped.database, dropped.table, dropped.name, dropped.guarded) == (
        Change.DROP, What.COLUMN, DB, "a", "env", True)
    assert added.type == "Array(Tuple(`x` DateTime64(3, 'UTC'), `y` Enum8('a\\'b' = 1)))"
    assert unknown.change is Change.OTHER and unknown.describe() == "does something to a chops does not model"
    assert effects_of({"type": "DropQuery", "kind": "Drop", "database": "", "table": "", "database_and_tables": {
        "children": [{"type": "TableIdentifier", "name": "x.a", "name_parts": ["x", "a"]},
                     {"type": "TableIdentifier", "name": "b"}]}}, DB) == (
        Effect(Change.DROP, What.TABLE, "x", "a"), Effect(Change.DROP, What.TABLE, DB, "b"))

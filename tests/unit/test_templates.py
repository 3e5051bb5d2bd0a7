"""Template variables in migrations (``ops.migrations.templates``): Go templates everywhere but comments, goose
ENVSUB expansions only on the lines goose expands, unknown variables as errors naming the line; and the real-world
corpora written that way (``tests/corpora/golang-migrate-templates``, ``tests/corpora/goose-envsub``) imported,
rendered and run on the engine."""

import pytest

from ops.core.errors import BadInput
from ops.migrations import sqlsplit
from ops.migrations.importers import import_migrations
from ops.migrations.sqlsplit import split_statements
from ops.migrations.templates import Use, render_variables, template_problems, template_variables
from tests.conftest import ROOT

CORPORA = ROOT / "tests" / "corpora"
VARIABLES = {"APP_CLUSTER": "main", "APP_REPLICATED": "Replicated", "EVENTS_TTL_DAYS": 30, "APP_ENV": "prod"}


def rendered(text, variables=VARIABLES):
    """Every statement of a file's text, rendered as the migrator renders it (statement by statement)."""
    return [render_variables(s.text, variables, first_line=s.line, envsub=s.envsub) for s in split_statements(text)]


# --- Go templates ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sql, expected", [
    ("ENGINE = {{.APP_REPLICATED}}MergeTree", "ENGINE = ReplicatedMergeTree"),  # glued to a word
    ("ON CLUSTER {{ .APP_CLUSTER }}", "ON CLUSTER main"),
    ("ON CLUSTER {{APP_CLUSTER}}", "ON CLUSTER main"),  # the {{database}} style, no dot
    ("ReplicatedMergeTree('/clickhouse/{{.APP_CLUSTER}}/tables/{shard}/events', '{replica}')",
     "ReplicatedMergeTree('/clickhouse/main/tables/{shard}/events', '{replica}')"),  # strings too; macros untouched
    ("Distributed(\"{{.APP_CLUSTER}}\", currentDatabase(), events)",
     "Distributed(\"main\", currentDatabase(), events)"),
    ("INTERVAL {{.EVENTS_TTL_DAYS}} DAY", "INTERVAL 30 DAY"),  # a TOML integer
    ("SELECT {{.app_env}}", "SELECT prod"),  # names are case-insensitive
    ("ON CLUSTER {{.CLUSTER}} ENGINE = {{ .cluster }}", "ON CLUSTER {{.CLUSTER}} ENGINE = {{ .cluster }}"),
    ("SELECT format('{{}} {}', 'x'), '{\"a\":{\"b\":1}}'", "SELECT format('{{}} {}', 'x'), '{\"a\":{\"b\":1}}'"),
    ("SELECT 1 -- {{.NOT_SET}} in a comment stays\n/* {{ .NOR_THIS }} */", None),
])
def test_go_templates(sql, expected):
    assert render_variables(sql, VARIABLES) == (sql if expected is None else expected)
    assert template_problems(sql, VARIABLES) == []


def test_values_are_inserted_as_they_are_never_scanned_again():
    assert render_variables("SELECT '{{.A}}'", {"A": "{{.B}} ${C}"}) == "SELECT '{{.B}} ${C}'"
    assert render_variables("SELECT {{.T}}, {{.F}}, {{.X}}", {"T": True, "F": False, "X": 1.5}) == \
        "SELECT true, false, 1.5"
    assert render_variables("ENGINE = {{.APP_REPLICATED}}MergeTree", {"APP_REPLICATED": ""}) == "ENGINE = MergeTree"


def test_unknown_variable_names_the_line_and_the_variable():
    text = "CREATE TABLE t\n(a Int8)\nENGINE = {{.APP_REPLICATED}}MergeTree ORDER BY a"
    assert template_problems(text, {}) == [(3, "unknown variable APP_REPLICATED in {{.APP_REPLICATED}}")]
    with pytest.raises(BadInput) as caught:
        render_variables(text, {}, first_line=7)
    assert caught.value.message == "line 9: unknown variable APP_REPLICATED in {{.APP_REPLICATED}}"
    assert "CHOPS_MIGRATIONS__VARIABLES__APP_REPLICATED" in caught.value.hint
    assert caught.value.exit_code == 2


def test_template_actions_are_reported_not_run():
    problems = template_problems("SELECT {{if .A}}1{{end}}, {{ .A | upper }}, {{- .A -}}", {"A": "x"})
    assert [message.split(" is not")[0] for _, message in problems] == [
        "template {{ .A | upper }}", "template {{- .A -}}", "template {{end}}", "template {{if .A}}"]


# --- goose ENVSUB ---------------------------------------------------------------------------------------------

ENV = {"GOOSE_ENV_NAME": "foo", "GOOSE_ENV_SET_BUT_EMPTY_VALUE": ""}


@pytest.mark.parametrize("line, expected", [
    # goose's own test data (internal/sqlparser/testdata/envsub), line by line
    ("\t$GOOSE_ENV_NAME text,", "\tfoo text,"),
    ("\t${GOOSE_ENV_NAME}title3 text,", "\tfootitle3 text,"),
    ("\t${ANOTHER_VAR:-default}title4 text,", "\tdefaulttitle4 text,"),
    ("\t${GOOSE_ENV_SET_BUT_EMPTY_VALUE-default}title5 text,", "\ttitle5 text,"),
    ("\t${GOOSE_ENV_SET_BUT_EMPTY_VALUE:-default}title6 text,", "\tdefaulttitle6 text,"),
    ("RAISE NOTICE '${GOOSE_ENV_NAME} \\$GOOSE_ENV_NAME $$GOOSE_ENV_NAME';",
     "RAISE NOTICE 'foo $GOOSE_ENV_NAME $GOOSE_ENV_NAME';"),
    ("SELECT ${A:-${B:-${GOOSE_ENV_NAME}}}", "SELECT foo"),  # defaults nest, and are used only when needed
    ("SELECT '${GOOSE_ENV_NAME:1}', '${GOOSE_ENV_NAME:0:2}', '${GOOSE_ENV_NAME: -1}'", "SELECT 'oo', 'fo', 'o'"),
    ("SELECT $(date), '\\\\', 1 $", "SELECT $(date), '\\\\', 1 $"),
    ("ENGINE = ${ENGINE_PREFIX:-Replacing}MergeTree(${VERSION_COLUMN:-version})",
     "ENGINE = ReplacingMergeTree(version)"),
])
def test_envsub_follows_goose(line, expected):
    text = f"-- +goose ENVSUB ON\n{line}"
    assert rendered(text, ENV) == [expected.strip().rstrip(";")]  # a statement starts at its first token
    assert template_problems(text, ENV) == []


def test_envsub_only_between_the_markers_and_never_in_comments():
    text = ("SELECT '${A}';\n"
            "-- +goose ENVSUB ON\n"
            "SELECT '${A}', $A -- ${NOT_SET} in a comment\n"
            ";\n"
            "-- +goose envsub off\n"
            "SELECT '${A}';\n")
    assert rendered(text, {"A": "x"}) == ["SELECT '${A}'", "SELECT 'x', x -- ${NOT_SET} in a comment", "SELECT '${A}'"]
    assert template_problems(text, {}) == [(3, "unknown variable A in $A"), (3, "unknown variable A in ${A}")]


def test_envsub_can_switch_inside_a_statement():
    # goose's own example: only the lines between the markers are expanded, even inside one statement
    text = ("ALTER TABLE t\n"
            "-- +goose ENVSUB ON\n"
            "    MODIFY COMMENT '${A}'\n"
            "-- +goose ENVSUB OFF\n"
            "    , MODIFY SETTING x = '${A}'")
    [statement] = split_statements(text)
    assert statement.envsub == frozenset({3})
    assert "MODIFY COMMENT 'x'" in rendered(text, {"A": "x"})[0]
    assert "MODIFY SETTING x = '${A}'" in rendered(text, {"A": "x"})[0]


@pytest.mark.parametrize("line, fragment", [
    ("SELECT ${NOT_SET}", "unknown variable NOT_SET in ${NOT_SET}"),
    ("SELECT ${DB?DB must name the telemetry database}.t",
     "variable DB is not set: DB must name the telemetry database"),
    ("SELECT ${DB?}", "variable DB is not set: not set"),
    ("SELECT $1", "goose cannot expand $1: a name must start with a letter"),
    ("SELECT ${_X}", "goose cannot expand ${_X}: a name must start with a letter"),
    ("SELECT ${A", "goose cannot expand ${A: expected }, :-, -, ? or : after A"),
    ("SELECT ${A:-x", "goose cannot expand ${A:-x: no closing }"),
    ("SELECT ${A:x}", "a substring needs whole numbers"),
])
def test_envsub_errors(line, fragment):
    problems = template_problems(f"-- +goose ENVSUB ON\n{line}", {"A": "1"})
    assert len(problems) == 1 and problems[0][0] == 2 and fragment in problems[0][1], problems


def test_variables_a_file_uses():
    text = ("CREATE TABLE {{.DB}}.t ON CLUSTER {{.CLUSTER}} -- {{.IN_A_COMMENT}}\n"
            "-- +goose ENVSUB ON\n"
            "ENGINE = ${PREFIX:-}MergeTree TTL d + toIntervalDay(${DAYS:-${DEFAULT_DAYS}}) ${NEEDED?why}")
    assert template_variables(text) == [
        Use("DB", 1), Use("PREFIX", 3, ""), Use("DAYS", 3, "${DEFAULT_DAYS}"), Use("DEFAULT_DAYS", 3, ""),
        Use("NEEDED", 3)]
    assert [u.required for u in template_variables(text)] == [True, False, False, False, True]
    assert template_variables("SELECT 1") == []


def test_cluster_placeholder_is_left_for_sqlsplit():
    sql = render_variables("CREATE TABLE t ON CLUSTER {{.CLUSTER}} AS s ENGINE = {{.APP_REPLICATED}}MergeTree",
                           VARIABLES)
    assert sqlsplit.render(sql, "prod", embedded=False) == \
        "CREATE TABLE t ON CLUSTER `prod` AS s ENGINE = ReplicatedMergeTree"
    # a cluster named by a variable is a literal clause once filled: the embedded engine removes it
    sql = render_variables("CREATE TABLE t ON CLUSTER '{{.APP_CLUSTER}}' (a Int8) ENGINE = Memory", VARIABLES)
    assert sqlsplit.render(sql, None, embedded=True) == "CREATE TABLE t (a Int8) ENGINE = Memory"


# --- the corpora, imported, rendered and run on the engine -----------------------------------------------------

def imported(tmp_path, name, fmt):
    dest = tmp_path / name
    plan = import_migrations(CORPORA / name, dest, fmt)
    return plan, [(dest / f"{row['id']}.sql", dest / f"{row['id']}.rollback.sql") for row in plan]


def run_file(db, path, variables):
    for sql in rendered(path.read_text(), variables):
        db.command(sqlsplit.render(sql, None, embedded=True))


def test_golang_migrate_templates_corpus_runs_on_the_engine(tmp_path, db):
    variables = {**VARIABLES, "APP_REPLICATED": ""}  # the embedded engine has no replication
    plan, files = imported(tmp_path, "golang-migrate-templates", "golang-migrate")
    assert [v["name"] for v in plan[5]["variables"]] == ["APP_CLUSTER", "EVENTS_TTL_DAYS", "APP_ENV"]
    for apply, _ in files:
        assert template_problems(apply.read_text(), variables) == []
        assert template_problems(apply.read_text(), {}) != []  # every file needs a variable
    try:
        for apply, _ in files:
            run_file(db, apply, variables)
        tables = dict(db.query("SELECT name, engine FROM system.tables WHERE database = 'analytics'").result_rows)
        assert tables == {"events": "MergeTree", "events_daily": "AggregatingMergeTree",
                          "events_daily_mv": "MaterializedView", "sessions": "ReplacingMergeTree"}
        assert db.query("SELECT comment FROM system.tables WHERE database = 'analytics' AND name = 'events'"
                        ).result_rows == [("raw events of prod, kept 30 days",)]
        for _, rollback in reversed(files):
            run_file(db, rollback, variables)
        assert db.query("SELECT count() FROM system.databases WHERE name = 'analytics'").result_rows == [(0,)]
    finally:
        db.command("DROP DATABASE IF EXISTS analytics SYNC")


def test_goose_envsub_corpus_runs_on_the_engine(tmp_path, db):
    variables = {"CLICKHOUSE_DATABASE": db.name, "SPANS_TTL_DAYS": 7}
    plan, files = imported(tmp_path, "goose-envsub", "goose")
    assert [[(v["name"], v["required"]) for v in row["variables"]] for row in plan] == [
        [("CLICKHOUSE_DATABASE", True), ("CLICKHOUSE_ENGINE_PREFIX", False), ("SPANS_TTL_DAYS", False)],
        [("CLICKHOUSE_DATABASE", True), ("CLICKHOUSE_ENGINE_PREFIX", False)],
        [("CLICKHOUSE_DATABASE", True)],  # ${NOT_EXPANDED} is on a line where ENVSUB is off; the other in a comment
        [("CLICKHOUSE_DATABASE", True), ("DEPLOY_ENV", False), ("SPANS_TTL_DAYS", False)],
    ]
    for apply, rollback in files:
        run_file(db, apply, variables)
    assert dict(db.query("SELECT name, engine FROM system.tables WHERE database = currentDatabase()").result_rows) == {
        "spans": "MergeTree", "trace_durations": "AggregatingMergeTree", "trace_durations_mv": "MaterializedView"}
    table = db.query("SELECT create_table_query, comment FROM system.tables WHERE database = currentDatabase() "
                     "AND name = 'spans'").result_rows[0]
    assert "toIntervalDay(7)" in table[0] and table[1] == "spans of dev, kept 7 days"
    assert "${NOT_EXPANDED}: ENVSUB is off on this line" in table[0]
    for _, rollback in reversed(files):
        run_file(db, rollback, variables)
    assert db.query("SELECT count() FROM system.tables WHERE database = currentDatabase()").result_rows == [(0,)]

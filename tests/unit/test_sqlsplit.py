"""SQL splitting, {cluster} rendering and literal ON CLUSTER clauses: quoting, comments, heredocs, line numbers,
bad input as BadInput."""

import pytest

from ops.core.errors import BadInput
from ops.migrations.sqlsplit import (Statement, envsub_lines, literal_clusters, on_cluster_clauses, render,
                                     split_statements)


def texts(sql):
    return [s.text for s in split_statements(sql)]


# --- split_statements -------------------------------------------------------------------------------------------

@pytest.mark.smoke
def test_multi_statement_file():
    sql = "CREATE TABLE a (x UInt8) ENGINE = Memory;\nINSERT INTO a VALUES (1);\nSELECT * FROM a;\n"
    assert split_statements(sql) == [
        Statement("CREATE TABLE a (x UInt8) ENGINE = Memory", 1),
        Statement("INSERT INTO a VALUES (1)", 2),
        Statement("SELECT * FROM a", 3),
    ]


def test_goose_envsub_lines_are_carried_by_each_statement():
    sql = ("SELECT 1;\n"
           "-- +goose ENVSUB ON\n"
           "SELECT '${A}',\n"
           "  2;\n"
           "   --   +goose   envsub   off\n"  # goose reads annotations case-insensitively
           "SELECT 3;\n"
           "-- +goose ENVSUB ON\n"
           "SELECT 4; SELECT 5")
    assert envsub_lines(sql) == frozenset({3, 4, 8})
    assert split_statements(sql) == [
        Statement("SELECT 1", 1), Statement("SELECT '${A}',\n  2", 3, frozenset({3, 4})), Statement("SELECT 3", 6),
        Statement("SELECT 4", 8, frozenset({8})), Statement("SELECT 5", 8, frozenset({8}))]
    assert envsub_lines("SELECT '-- +goose ENVSUB ON is not alone on its line'") == frozenset()
    assert split_statements("SELECT 1")[0].envsub == frozenset()


def test_statement_is_frozen():
    with pytest.raises(Exception):
        split_statements("SELECT 1")[0].text = "x"


@pytest.mark.parametrize("sql, expected", [
    ("SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", "SELECT 2"]),
    ("SELECT 'it''s; ok'; SELECT 2", ["SELECT 'it''s; ok'", "SELECT 2"]),
    ("SELECT 'a\\';b'; SELECT 2", ["SELECT 'a\\';b'", "SELECT 2"]),
    ("SELECT 'a\\\\'; SELECT 2", ["SELECT 'a\\\\'", "SELECT 2"]),  # escaped backslash, then the closing quote
    ('SELECT 1 AS "a;b"; SELECT 2', ['SELECT 1 AS "a;b"', "SELECT 2"]),
    ('SELECT 1 AS "a"";b"; SELECT 2', ['SELECT 1 AS "a"";b"', "SELECT 2"]),
    ("SELECT 1 AS `a;b`; SELECT 2", ["SELECT 1 AS `a;b`", "SELECT 2"]),
    ("SELECT 1 AS `a\\`;b`; SELECT 2", ["SELECT 1 AS `a\\`;b`", "SELECT 2"]),
    ("SELECT $$a;b$$; SELECT 2", ["SELECT $$a;b$$", "SELECT 2"]),
    ("SELECT $x$ ; $x$; SELECT 2", ["SELECT $x$ ; $x$", "SELECT 2"]),
    ("SELECT $x$ $$ ; 'x $x$; SELECT 2", ["SELECT $x$ $$ ; 'x $x$", "SELECT 2"]),  # quotes mean nothing inside
    ("SELECT 'a $$ b'; SELECT 2", ["SELECT 'a $$ b'", "SELECT 2"]),  # nor does $$ inside a string
    ("SELECT a$b; SELECT 2", ["SELECT a$b", "SELECT 2"]),  # `$` inside an identifier opens nothing
    ("SELECT $ ; SELECT 2", ["SELECT $", "SELECT 2"]),
    ("SELECT 1 -- one; two\n; SELECT 2", ["SELECT 1 -- one; two", "SELECT 2"]),
    ("SELECT 1 /* one; two */; SELECT 2", ["SELECT 1 /* one; two */", "SELECT 2"]),
    ("SELECT 1 /* a /* nested; */ still; */; SELECT 2", ["SELECT 1 /* a /* nested; */ still; */", "SELECT 2"]),
    ("SELECT 1 // one; two\n; SELECT 2", ["SELECT 1 // one; two", "SELECT 2"]),
    ("SELECT 1 # one; two\n; SELECT 2", ["SELECT 1 # one; two", "SELECT 2"]),
    ("SELECT 4/2; SELECT 3-1; SELECT 5 - -1", ["SELECT 4/2", "SELECT 3-1", "SELECT 5 - -1"]),
    ("SELECT '--'; SELECT '/*'", ["SELECT '--'", "SELECT '/*'"]),
], ids=["string", "doubled-quote", "backslash-quote", "escaped-backslash", "double-quoted", "double-quoted-doubled",
        "backtick", "backtick-escaped", "heredoc", "tagged-heredoc", "heredoc-other-tags", "dollars-in-string",
        "dollar-in-identifier", "lone-dollar", "line-comment", "block-comment", "nested-block-comment",
        "slash-comment", "hash-comment", "operators", "comment-openers-in-strings"])
def test_semicolons_inside_quotes_comments_and_heredocs(sql, expected):
    assert texts(sql) == expected


def test_multiline_heredoc_and_string_kept_verbatim():
    sql = "INSERT INTO t VALUES ($body$\nline one;\nline two;\n$body$);\nSELECT 'a\nb;\nc';\n"
    assert split_statements(sql) == [
        Statement("INSERT INTO t VALUES ($body$\nline one;\nline two;\n$body$)", 1),
        Statement("SELECT 'a\nb;\nc'", 5),
    ]


def test_leading_comments_dropped_inner_comments_kept():
    sql = (
        "-- depends: 0001_init\n"
        "-- another header; with a semicolon\n"
        "/* block\n   header */\n"
        "\n"
        "CREATE TABLE t -- the table\n"
        "(\n"
        "    x UInt8 /* a column */\n"
        ") ENGINE = Memory;\n"
        "-- between\n"
        "\n"
        "  DROP TABLE t  \n"
        "  -- trailing comment after the last statement\n"
    )
    assert split_statements(sql) == [
        Statement("CREATE TABLE t -- the table\n(\n    x UInt8 /* a column */\n) ENGINE = Memory", 6),
        Statement("DROP TABLE t  \n  -- trailing comment after the last statement", 12),
    ]


@pytest.mark.parametrize("sql", [
    "", "   \n\t\n", "-- only a comment", "-- a;\n-- b;\n", "/* a; */", ";", " ; ;\n;", "-- x\n;\n/* y */;",
], ids=["empty", "whitespace", "line-comment", "line-comments", "block-comment", "semicolon", "semicolons",
        "comments-and-semicolons"])
def test_nothing_but_comments_and_whitespace_gives_no_statements(sql):
    assert split_statements(sql) == []


def test_final_statement_without_semicolon():
    assert split_statements("SELECT 1;\n\nSELECT\n  2\n") == [Statement("SELECT 1", 1), Statement("SELECT\n  2", 3)]


def test_empty_statements_between_semicolons_are_dropped():
    assert texts("SELECT 1;;\n;SELECT 2;") == ["SELECT 1", "SELECT 2"]


def test_line_numbers_are_those_of_the_first_token():
    sql = "\n\n  -- c\n  /* d\n */ SELECT 1; SELECT 2;\n'x';\n\n\n`y`"
    assert [(s.text, s.line) for s in split_statements(sql)] == [
        ("SELECT 1", 5), ("SELECT 2", 5), ("'x'", 6), ("`y`", 9)]


def test_crlf_line_endings():
    assert split_statements("SELECT 1;\r\nSELECT 2;\r\n") == [Statement("SELECT 1", 1), Statement("SELECT 2", 2)]


@pytest.mark.parametrize("sql, message", [
    ("SELECT 1;\n\nSELECT 'abc;\n", "unterminated string starting on line 3"),
    ("SELECT 'it''s", "unterminated string starting on line 1"),
    ("SELECT 'a\\'", "unterminated string starting on line 1"),
    ("SELECT 1;\nSELECT \"abc", "unterminated quoted identifier starting on line 2"),
    ("SELECT `abc", "unterminated quoted identifier starting on line 1"),
    ("SELECT 1;\n/* no end;\nSELECT 2;", "unterminated comment starting on line 2"),
    ("/* a /* b */ still open", "unterminated comment starting on line 1"),
    ("SELECT 1;\n\n\n\nSELECT $$a;b", "unterminated heredoc $$ starting on line 5"),
    ("SELECT $tag$ a $other$", "unterminated heredoc $tag$ starting on line 1"),
], ids=["string", "string-doubled-quote", "string-escaped-quote", "double-quoted", "backtick", "comment",
        "nested-comment", "heredoc", "tagged-heredoc"])
def test_unterminated_constructs_name_their_line(sql, message):
    with pytest.raises(BadInput) as caught:
        split_statements(sql)
    assert caught.value.message == message
    assert caught.value.exit_code == 2


# --- render --------------------------------------------------------------------------------------------------

REPLICATED = (
    "CREATE TABLE db.events ON CLUSTER {cluster}\n"
    "(\n"
    "    ts DateTime,\n"
    "    msg String DEFAULT '{cluster}'\n"
    ")\n"
    "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')\n"
    "ORDER BY ts;\n"
    "-- runs ON CLUSTER {cluster} when one is set\n"
    "CREATE TABLE db.events_all ON CLUSTER {cluster} AS db.events\n"
    "ENGINE = Distributed({cluster}, db, events, rand());\n"
)


@pytest.mark.smoke
def test_render_with_cluster():
    assert render(REPLICATED, "prod_cluster") == (
        "CREATE TABLE db.events ON CLUSTER `prod_cluster`\n"
        "(\n"
        "    ts DateTime,\n"
        "    msg String DEFAULT '{cluster}'\n"
        ")\n"
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')\n"
        "ORDER BY ts;\n"
        "-- runs ON CLUSTER {cluster} when one is set\n"
        "CREATE TABLE db.events_all ON CLUSTER `prod_cluster` AS db.events\n"
        "ENGINE = Distributed('prod_cluster', db, events, rand());\n"
    )


@pytest.mark.parametrize("cluster", [None, ""], ids=["none", "empty"])
def test_render_without_cluster_removes_on_cluster(cluster):
    sql = "CREATE TABLE t ON CLUSTER {cluster} (x UInt8) ENGINE = Memory;\nDROP TABLE t ON CLUSTER {cluster};\n"
    assert render(sql, cluster) == "CREATE TABLE t (x UInt8) ENGINE = Memory;\nDROP TABLE t;\n"


def test_render_without_cluster_multiline_and_any_case_keeps_line_numbers():
    sql = "CREATE DATABASE d\n    on   Cluster\t{cluster}\n    ENGINE = Atomic;\nSELECT 1"
    assert render(sql, None) == "CREATE DATABASE d\n\n    ENGINE = Atomic;\nSELECT 1"
    assert split_statements(render(sql, None))[1] == split_statements(sql)[1]
    sql = "CREATE DATABASE d\n    on   Cluster\t{cluster}\n    ENGINE = Atomic"
    assert render(sql, "c1") == "CREATE DATABASE d\n    on   Cluster\t`c1`\n    ENGINE = Atomic"


def test_render_without_cluster_never_glues_words():
    assert render("ALTER TABLE t ON CLUSTER {cluster}DELETE WHERE 1", None) == "ALTER TABLE t DELETE WHERE 1"


def test_render_leaves_strings_identifiers_comments_and_heredocs_alone():
    sql = ("SELECT '{cluster}', \"{cluster}\", `{cluster}`, $$ON CLUSTER {cluster}$$ "
           "/* ON CLUSTER {cluster} */ -- {cluster}\n")
    assert render(sql, "c") == sql
    assert render(sql, None) == sql


def test_render_keeps_server_macros_in_strings_without_cluster():
    sql = "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}') -- '{cluster}'"
    assert render(sql, None) == sql


def test_render_on_cluster_string_macro_untouched():
    sql = "CREATE TABLE t ON CLUSTER '{cluster}' (x UInt8)"  # ClickHouse expands this macro on the server
    assert render(sql, None) == sql
    assert render(sql, "c") == sql


def test_render_without_placeholders_is_identity():
    sql = "SELECT 1; -- nothing to do\n"
    assert render(sql, None) == sql
    assert render(sql, "c") == sql


def test_render_does_not_touch_query_parameters_or_other_braces():
    sql = "SELECT {cluster:String}, {clusters}, map('a', 1)"
    assert render(sql, None) == sql


def test_bare_placeholder_without_cluster_is_bad_input():
    sql = ("CREATE TABLE t ON CLUSTER {cluster} (x UInt8);\n\n"
           "CREATE TABLE d AS t\nENGINE = Distributed({cluster}, db, t);")
    with pytest.raises(BadInput) as caught:
        render(sql, None)
    assert caught.value.message == "SQL on line 4 uses {cluster} but clickhouse.cluster is not set"
    assert "clickhouse.cluster" in caught.value.line()


@pytest.mark.parametrize("name", ["my cluster", "c;DROP", "c`x", "c'x", "ä", "c\n"],
                         ids=["space", "semicolon", "backtick", "quote", "non-ascii", "trailing-newline"])
def test_bad_cluster_name(name):
    with pytest.raises(BadInput, match="cluster name .* is not valid"):
        render("SELECT 1", name)


@pytest.mark.parametrize("name", ["c1", "prod.eu-west_1", "A-B"])
def test_good_cluster_names(name):
    assert render("DROP TABLE t ON CLUSTER {cluster}", name) == f"DROP TABLE t ON CLUSTER `{name}`"


def test_render_raises_on_unterminated_string():
    with pytest.raises(BadInput, match="unterminated string starting on line 2"):
        render("SELECT 1;\nSELECT '{cluster}", "c")


def test_render_without_cluster_then_split():
    sql = REPLICATED.replace("Distributed({cluster}", "Distributed('c'")
    statements = split_statements(render(sql, None))
    assert [s.text.split("\n")[0] for s in statements] == [
        "CREATE TABLE db.events", "CREATE TABLE db.events_all AS db.events"]
    assert [s.line for s in statements] == [1, 9]


# --- literal ON CLUSTER: removed on the embedded engine, kept (and listed for validation) on a server ------------

@pytest.mark.parametrize("clause", [
    "ON CLUSTER default", "on cluster default", "ON CLUSTER '{cluster}'", "ON CLUSTER 'main'",
    'ON CLUSTER "my-cluster"',
    "ON CLUSTER `my.cluster`", "ON CLUSTER {cluster}", "ON CLUSTER {{.CLUSTER}}", "ON CLUSTER {{ .CLUSTER }}",
    "ON /* why */ CLUSTER main", "ON CLUSTER 'it''s'",
], ids=["bare", "lowercase", "macro-string", "string", "double-quoted", "backtick", "template", "go-template",
        "go-template-spaced", "comment-inside", "doubled-quote"])
def test_embedded_removes_every_on_cluster_clause(clause):
    sql = f"CREATE TABLE t {clause} (x UInt8) ENGINE = Memory;\nDROP TABLE t {clause} SYNC;\n"
    assert render(sql, None, embedded=True) == "CREATE TABLE t (x UInt8) ENGINE = Memory;\nDROP TABLE t SYNC;\n"


def test_embedded_ignores_a_configured_cluster():
    assert render("DROP TABLE t ON CLUSTER {cluster}", "main", embedded=True) == "DROP TABLE t"


def test_embedded_removal_keeps_newlines_and_never_glues_words():
    sql = "ALTER TABLE t\n    ON CLUSTER\n    default\n    ADD COLUMN y UInt8;\nSELECT 1"
    rendered = render(sql, None, embedded=True)
    assert rendered == "ALTER TABLE t\n\n\n    ADD COLUMN y UInt8;\nSELECT 1"
    assert [s.line for s in split_statements(rendered)] == [1, 5]
    assert render("ALTER TABLE t ON CLUSTER `c`DELETE WHERE 1", None, embedded=True) == "ALTER TABLE t DELETE WHERE 1"
    assert render("CREATE TABLE t ON CLUSTER c(x UInt8)", None, embedded=True) == "CREATE TABLE t(x UInt8)"


def test_strings_and_comments_that_mention_on_cluster_are_untouched():
    sql = ("ALTER TABLE t ON CLUSTER default ADD COLUMN note String DEFAULT 'ON CLUSTER default' "
           "COMMENT \"ON CLUSTER x\" -- ON CLUSTER default\n/* ON CLUSTER main */")
    assert render(sql, None, embedded=True) == (
        "ALTER TABLE t ADD COLUMN note String DEFAULT 'ON CLUSTER default' "
        "COMMENT \"ON CLUSTER x\" -- ON CLUSTER default\n/* ON CLUSTER main */")


def test_a_join_on_a_column_named_cluster_is_no_clause():
    sql = ("CREATE VIEW v ON CLUSTER main AS SELECT * FROM a JOIN b ON cluster IN (1) AND cluster = b.c;\n"
           "SELECT * FROM a JOIN b ON cluster AND b.ok")
    assert render(sql, None, embedded=True) == (
        "CREATE VIEW v AS SELECT * FROM a JOIN b ON cluster IN (1) AND cluster = b.c;\n"
        "SELECT * FROM a JOIN b ON cluster AND b.ok")
    assert [c.name for c in on_cluster_clauses(sql)] == ["main"]


@pytest.mark.parametrize("cluster", [None, "main"], ids=["no-cluster", "cluster"])
def test_server_keeps_literal_clauses(cluster):
    sql = "CREATE TABLE t ON CLUSTER default (x UInt8);\nDROP TABLE u ON CLUSTER 'other';\nDROP TABLE w ON CLUSTER `c`"
    assert render(sql, cluster) == sql


def test_server_go_template_is_the_placeholder():
    sql = "CREATE TABLE t ON CLUSTER {{.CLUSTER}} AS s ENGINE = Distributed({{ .CLUSTER }}, db, s)"
    assert render(sql, "main") == "CREATE TABLE t ON CLUSTER `main` AS s ENGINE = Distributed('main', db, s)"
    with pytest.raises(BadInput, match=r"line 1 uses \{\{ \.CLUSTER \}\} but clickhouse.cluster is not set"):
        render(sql, None)


def test_literal_clusters_names_and_lines():
    sql = ("CREATE TABLE a ON CLUSTER default (x UInt8);\n"
           "CREATE TABLE b ON CLUSTER {cluster} (x UInt8);\n"
           "CREATE TABLE c ON CLUSTER '{cluster}' (x UInt8);\n"
           "ALTER TABLE a\n  ON CLUSTER \"prod-eu\" ADD COLUMN y UInt8;\n"
           "-- ON CLUSTER commented\n"
           "SELECT 'ON CLUSTER quoted';\n"
           "DROP TABLE a ON CLUSTER `it``s`")
    assert literal_clusters(sql) == [("default", 1), ("prod-eu", 5), ("it`s", 8)]
    assert literal_clusters("SELECT 1") == []


def test_literal_clusters_of_unterminated_sql_is_bad_input():
    with pytest.raises(BadInput, match="unterminated string starting on line 1"):
        literal_clusters("DROP TABLE t ON CLUSTER 'main")

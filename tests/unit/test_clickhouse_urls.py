"""Parsing and masking of ClickHouse URLs, the settings they carry, and the embedded engine's configuration file
(no engine needed)."""

from pathlib import Path

import pytest

from ops.clickhouse.engine_config import config_path, engine_config, not_applied
from ops.core.errors import ConfigError
from ops.core.urls import mask_url, parse_url, target


def test_server_url_with_everything():
    t = parse_url("https://ana%40corp:p%3Ass@ch.example:9443/events")
    assert (t.kind, t.host, t.port, t.secure, t.database) == ("server", "ch.example", 9443, True, "events")
    assert (t.username, t.password) == ("ana@corp", "p:ss")
    assert t.url == "https://ana%40corp:********@ch.example:9443/events"


@pytest.mark.parametrize("url, port, database", [
    ("http://h", 8123, "dflt"),
    ("https://h/", 8443, "dflt"),
    ("http://h:18123/?database=x", 18123, "x"),
])
def test_server_url_defaults(url, port, database):
    t = parse_url(url, default_database="dflt")
    assert (t.port, t.database) == (port, database)


def test_embedded_url():
    t = parse_url("chdb:///srv/chops/var/clickhouse?database=analytics")
    assert (t.kind, t.path, t.database) == ("embedded", Path("/srv/chops/var/clickhouse"), "analytics")


def test_default_target_is_embedded_under_var(settings):
    t = target(settings)
    assert t.kind == "embedded"
    assert t.path == settings.path("paths.var") / "clickhouse"


@pytest.mark.parametrize("raw, shown", [
    ("http://u:secret@h:8123/db", "http://u:********@h:8123/db"),
    ("http://u@h/db", "http://u@h/db"),
    ("chdb:///x", "chdb:///x"),
])
def test_mask_url(raw, shown):
    assert mask_url(raw) == shown


def test_url_parameters_are_settings_by_group():
    t = parse_url("chdb:///srv/ch?database=a&max_threads=4&merge_tree.allow_dimensions_outside_sorting_key=1"
                  "&server_settings.background_pool_size=16")
    assert (t.database, dict(t.settings)) == ("a", {"max_threads": "4"})
    assert dict(t.merge_tree) == {"allow_dimensions_outside_sorting_key": "1"}
    assert dict(t.server_settings) == {"background_pool_size": "16"}
    assert t.url == "chdb:///srv/ch"
    server = parse_url("https://u:p@h/db?max_execution_time=60&database=ignored")
    assert (server.database, dict(server.settings), dict(server.merge_tree)) == ("db", {"max_execution_time": "60"}, {})


def test_target_merges_configured_tables_with_the_url(settings):
    s = settings.with_overrides(clickhouse__settings={"max_threads": 2, "max_block_size": 100},
                                clickhouse__merge_tree={"allow_dimensions_outside_sorting_key": True},
                                clickhouse__url="chdb:///srv/ch?max_threads=1&server_settings.background_pool_size=8")
    t = target(s)
    assert dict(t.settings) == {"max_threads": "1", "max_block_size": 100}  # the URL's win
    assert dict(t.merge_tree) == {"allow_dimensions_outside_sorting_key": True}
    assert dict(t.server_settings) == {"background_pool_size": "8"}
    assert dict(target(settings).settings) == {}


def test_engine_config_file():
    assert engine_config({}, {}) is None
    text = engine_config({"allow_dimensions_outside_sorting_key": True, "max_parts_in_total": 100},
                         {"background_pool_size": 8, "mark_cache_policy": "SLRU<&>"})
    body = [line.strip() for line in text.splitlines() if not line.lstrip().startswith(("<!--", "each time"))]
    assert body == ["<clickhouse>", "<background_pool_size>8</background_pool_size>",
                    "<mark_cache_policy>SLRU&lt;&amp;&gt;</mark_cache_policy>", "<merge_tree>",
                    "<allow_dimensions_outside_sorting_key>1</allow_dimensions_outside_sorting_key>",
                    "<max_parts_in_total>100</max_parts_in_total>", "</merge_tree>", "</clickhouse>"]
    assert config_path(Path("/srv/var/clickhouse")) == Path("/srv/var/clickhouse.config.xml")


def test_not_applied_compares_as_clickhouse_prints():
    wanted = {"allow_dimensions_outside_sorting_key": True, "background_pool_size": 16, "x": "1", "gone": 1}
    actual = {"allow_dimensions_outside_sorting_key": "1", "background_pool_size": "2", "x": "1"}
    assert not_applied(wanted, actual) == {"background_pool_size": "2", "gone": None}


# --- issue 14: a password is never shown, whatever it contains ---------------------------------------------------

PIECES = ("Zq9xk", "Wv7y", "Jm4p", "Hb2n", "Tt5r")


@pytest.mark.parametrize("password", [
    "Zq9xk/Wv7y", "Zq9xk@Wv7y", "Zq9xk?Wv7y", "Zq9xk#Wv7y", "Zq9xk:Wv7y", "Zq9xk/Wv7y@Jm4p?Hb2n#Tt5r",
    "Zq9xk@Wv7y/Jm4p", "8123/Zq9xk", "12?Zq9xk", "Zq9xk@", "/Zq9xk",
], ids=["slash", "at", "question", "hash", "colon", "everything", "at-then-slash", "port-like", "port-query",
        "trailing-at", "leading-slash"])
@pytest.mark.parametrize("scheme", ["http", "https", "htps"])
def test_an_unencoded_password_is_never_shown(password, scheme):
    url = f"{scheme}://ana:{password}@ch.example:8123/events"
    masked = mask_url(url)
    assert masked == f"{scheme}://ana:********@ch.example:8123/events"
    try:
        t = parse_url(url)
    except ConfigError as exc:
        shown = exc.line()
    else:
        assert t.password == password  # an unencoded '@' or ':' is still read right
        shown = t.url
    assert not any(piece in shown for piece in PIECES if piece in password), shown


def test_a_password_with_a_slash_says_how_to_encode_it():
    with pytest.raises(ConfigError) as err:
        parse_url("http://ana:8123/Zq9xk@ch.example/events", where="environment CLICKHOUSE_URL")
    assert err.value.line() == ("environment CLICKHOUSE_URL: cannot read 'http://ana:********@ch.example/events': "
                                "a '/', '?', '#' or '@' in the password must be percent-encoded (%2F, %3F, %23, %40)")


def test_other_errors_keep_their_reason_and_a_masked_url():
    with pytest.raises(ConfigError, match=r"port must be a number from 1 to 65535 in "
                                          r"'http://ana:\*\*\*\*\*\*\*\*@ch.example:99999/db'"):
        parse_url("http://ana:pw@ch.example:99999/db")
    with pytest.raises(ConfigError, match="a URL has no #fragment"):
        parse_url("http://ana:pw@ch.example/db#top")


@pytest.mark.parametrize("url, shown", [
    ("http://h:8123/db?quota_key=a@b", "http://h:********@b"),  # ambiguous: masked too much, never too little
    ("chdb:///srv/a:b@c/clickhouse", "chdb:///srv/a:b@c/clickhouse"),  # a path, not a password
    ("http://:pw@h/db", "http://:********@h/db"),
])
def test_mask_url_edge_cases(url, shown):
    assert mask_url(url) == shown

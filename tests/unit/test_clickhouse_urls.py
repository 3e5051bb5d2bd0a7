"""Parsing and masking of ClickHouse URLs (no engine needed)."""

from pathlib import Path

import pytest

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

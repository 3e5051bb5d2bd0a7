"""Settings: precedence, provenance, masking, and every bad input as a one-line ConfigError (exit 2)."""

import os

import pytest

from ops.core.errors import ConfigError
from ops.core.settings import load_settings


def load(project, **env):
    return load_settings(root=project, environ={"CHOPS_ENV_FILE": str(project / ".env"), **env})


def write_env(project, text, mode=0o600):
    path = project / ".env"
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.mark.smoke
def test_defaults_come_from_default_toml(project):
    s = load(project)
    assert s.env == "dev"
    assert s.get("clickhouse.database") == "chops"
    assert s.sources["clickhouse.database"] == "config/default.toml"
    assert s.clickhouse["database"] == "chops"


def test_precedence_default_then_overlay_then_dotenv_then_environment(project):
    (project / "config" / "test.toml").write_text("[clickhouse]\nlock_timeout = 11\ndatabase = \"from_overlay\"\n")
    write_env(project, "CHOPS_CLICKHOUSE__LOCK_TIMEOUT=22\nCHOPS_PATHS__LOGS=from_dotenv\n")
    s = load(project, CHOPS_ENV="test", CHOPS_CLICKHOUSE__LOCK_TIMEOUT="33")

    assert s.get("clickhouse.database") == "from_overlay"
    assert s.sources["clickhouse.database"] == "config/test.toml"
    assert s.get("paths.logs") == "from_dotenv"
    assert s.sources["paths.logs"] == ".env (CHOPS_PATHS__LOGS)"
    assert s.get("clickhouse.lock_timeout") == 33.0  # environment beats .env beats overlay
    assert s.sources["clickhouse.lock_timeout"] == "environment CHOPS_CLICKHOUSE__LOCK_TIMEOUT"
    assert s.get("paths.var") == "var" and s.sources["paths.var"] == "config/default.toml"


def test_clickhouse_url_alias_and_types_converted(project):
    s = load(project, CLICKHOUSE_URL="http://u:pw@db.example:8123/analytics", CHOPS_BENCH__ROUNDS="3")
    assert s.get("clickhouse.url").startswith("http://u:pw@")
    assert s.sources["clickhouse.url"] == "environment CLICKHOUSE_URL"
    assert s.get("bench.rounds") == 3 and isinstance(s.get("bench.rounds"), int)


def test_settings_are_frozen(project):
    s = load(project)
    with pytest.raises(Exception):
        s.env = "prod"
    with pytest.raises(TypeError):
        s.values["clickhouse.url"] = "x"


def test_secrets_masked_in_describe_and_repr(project):
    write_env(project, "CLICKHOUSE_URL=https://admin:s3cr3t@ch.example:8443/prod\nAPI_TOKEN=tok-123\n")
    s = load(project)
    shown = {r["key"]: r for r in s.describe()}
    assert shown["clickhouse.url"]["value"] == "https://admin:********@ch.example:8443/prod"
    assert shown["clickhouse.url"]["source"] == ".env (CLICKHOUSE_URL)"
    assert "s3cr3t" not in repr(s) and "tok-123" not in repr(s)
    assert s.secrets["API_TOKEN"] == "tok-123"  # pipelines can read their own secrets from .env


@pytest.mark.parametrize("url, fragment", [
    ("ftp://host/db", "unknown scheme 'ftp'"),
    ("localhost:8123", "unknown scheme"),
    ("http:///db", "no host"),
    ("http://host:port/db", "port must be a number"),
    ("http://host:99999/db", "port must be a number"),
    ("http://host:8123/a/b", "names one database"),
    ("http://host:8123/bad-name", "not a valid identifier"),
    ("chdb://relative/path", "chdb:///absolute/path"),
], ids=["scheme", "no-scheme", "no-host", "port-text", "port-range", "path", "db-name", "chdb-relative"])
def test_malformed_clickhouse_url(project, url, fragment):
    with pytest.raises(ConfigError) as err:
        load(project, CLICKHOUSE_URL=url)
    assert fragment in err.value.line()
    assert err.value.exit_code == 2
    assert "CLICKHOUSE_URL" in err.value.line()


def test_malformed_url_never_shows_password(project):
    with pytest.raises(ConfigError) as err:
        load(project, CLICKHOUSE_URL="ftp://user:hunter2@host/db")
    assert "hunter2" not in err.value.line()


def test_toml_syntax_error_names_file_and_line(project):
    (project / "config" / "dev.toml").write_text("[clickhouse]\nlock_timeout = \n")
    with pytest.raises(ConfigError) as err:
        load(project)
    assert "config/dev.toml" in err.value.line() and "line 2" in err.value.line()


def test_unknown_environment(project):
    with pytest.raises(ConfigError) as err:
        load(project, CHOPS_ENV="staging")
    assert "unknown environment 'staging'" in err.value.line()
    assert "config/staging.toml" in err.value.line()


@pytest.mark.parametrize("text, fragment", [
    ("[clickhouse]\ntimeout = 3\n", "config/dev.toml: unknown key clickhouse.timeout"),
    ("[nosuch]\nx = 1\n", "config/dev.toml: unknown section [nosuch]"),
    ("[clickhouse]\nlock_timeout = \"soon\"\n", "config/dev.toml: clickhouse.lock_timeout must be float"),
    ("[bench]\nrounds = 2.5\n", "config/dev.toml: bench.rounds must be int"),
], ids=["key", "section", "type-str", "type-float"])
def test_unknown_keys_and_wrong_types_in_toml(project, text, fragment):
    (project / "config" / "dev.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load(project)
    assert fragment in err.value.line()


def test_unknown_variable_in_environment_and_dotenv(project):
    with pytest.raises(ConfigError, match="environment: unknown variable CHOPS_CLICKHOUSE__TIMEOUT"):
        load(project, CHOPS_CLICKHOUSE__TIMEOUT="3")
    write_env(project, "CHOPS_NOSUCH__KEY=1\n")
    with pytest.raises(ConfigError, match=r"\.env: unknown variable CHOPS_NOSUCH__KEY"):
        load(project)


def test_wrong_type_in_environment(project):
    with pytest.raises(ConfigError, match="CHOPS_CLICKHOUSE__LOCK_TIMEOUT must be float, got 'soon'"):
        load(project, CHOPS_CLICKHOUSE__LOCK_TIMEOUT="soon")


def test_dotenv_readable_by_others_is_refused(project):
    write_env(project, "CLICKHOUSE_URL=http://u:p@h:8123/db\n", mode=0o644)
    with pytest.raises(ConfigError) as err:
        load(project)
    assert "readable by others" in err.value.line() and "chmod 600" in err.value.line()


def test_negative_lock_timeout_refused(project):
    with pytest.raises(ConfigError, match="lock_timeout must be >= 0"):
        load(project, CHOPS_CLICKHOUSE__LOCK_TIMEOUT="-1")


def test_every_variable_is_documented_in_env_example():
    from ops import ROOT
    from ops.core.settings import ALIASES, META_VARIABLES, SCHEMA

    example = (ROOT / "config" / ".env.example").read_text()
    expected = {f"CHOPS_{s.upper()}__{k.upper()}" for s, keys in SCHEMA.items() for k in keys}
    expected |= set(ALIASES) | META_VARIABLES
    missing = sorted(v for v in expected if v not in example)
    assert not missing, f"config/.env.example does not document {missing}"


# --- tables of ClickHouse settings: [clickhouse.settings], [clickhouse.merge_tree], [clickhouse.server_settings] ---

def rows(settings):
    return {r["key"]: r for r in settings.describe()}


def test_setting_tables_default_to_empty_and_show_one_row(project):
    s = load(project)
    assert dict(s.get("clickhouse.settings")) == {} and dict(s.clickhouse["merge_tree"]) == {}
    shown = rows(s)
    assert shown["clickhouse.server_settings"]["value"] == {}
    assert shown["clickhouse.server_settings"]["source"] == "config/default.toml"


def test_setting_tables_merge_entry_by_entry_with_a_source_each(project):
    (project / "config" / "default.toml").write_text(
        (project / "config" / "default.toml").read_text().replace(
            "[clickhouse.merge_tree]\n", "[clickhouse.merge_tree]\nallow_dimensions_outside_sorting_key = true\n"
                                         "index_granularity = 8192\n"))
    (project / "config" / "test.toml").write_text(
        "[clickhouse.merge_tree]\nindex_granularity = 1024\n[clickhouse.settings]\nmax_threads = 2\n")
    write_env(project, "CHOPS_CLICKHOUSE__SETTINGS__MAX_THREADS=3\n")
    s = load(project, CHOPS_ENV="test", CHOPS_CLICKHOUSE__SERVER_SETTINGS__BACKGROUND_POOL_SIZE="8")

    assert dict(s.get("clickhouse.merge_tree")) == {"allow_dimensions_outside_sorting_key": True,
                                                    "index_granularity": 1024}
    assert dict(s.get("clickhouse.settings")) == {"max_threads": "3"}  # text from .env: ClickHouse parses it
    assert dict(s.get("clickhouse.server_settings")) == {"background_pool_size": "8"}
    shown = rows(s)
    assert shown["clickhouse.merge_tree.allow_dimensions_outside_sorting_key"]["source"] == "config/default.toml"
    assert shown["clickhouse.merge_tree.index_granularity"]["source"] == "config/test.toml"
    assert shown["clickhouse.settings.max_threads"]["source"] == ".env (CHOPS_CLICKHOUSE__SETTINGS__MAX_THREADS)"
    assert shown["clickhouse.server_settings.background_pool_size"] == {
        "key": "clickhouse.server_settings.background_pool_size", "value": "8",
        "source": "environment CHOPS_CLICKHOUSE__SERVER_SETTINGS__BACKGROUND_POOL_SIZE",
        "help": shown["clickhouse.server_settings.background_pool_size"]["help"]}
    with pytest.raises(TypeError):
        s.get("clickhouse.settings")["max_threads"] = 1  # frozen like every value


def test_url_settings_win_and_are_shown_with_the_url_as_source(project):
    (project / "config" / "dev.toml").write_text("[clickhouse.settings]\nmax_threads = 2\nmax_memory_usage = 1000\n")
    s = load(project, CLICKHOUSE_URL="chdb:///srv/ch?max_threads=1&server_settings.background_pool_size=16")
    shown = rows(s)
    assert shown["clickhouse.settings.max_threads"]["value"] == "1"
    assert shown["clickhouse.settings.max_threads"]["source"] == "environment CLICKHOUSE_URL (URL parameter)"
    assert shown["clickhouse.settings.max_memory_usage"]["source"] == "config/dev.toml"
    assert shown["clickhouse.server_settings.background_pool_size"]["value"] == "16"


def test_engine_settings_with_a_server_url_say_they_are_not_applied(project):
    (project / "config" / "dev.toml").write_text("[clickhouse.merge_tree]\nallow_dimensions_outside_sorting_key = 1\n"
                                                 "[clickhouse.settings]\nmax_threads = 2\n")
    shown = rows(load(project, CLICKHOUSE_URL="http://ch.example:8123/db"))
    assert shown["clickhouse.merge_tree.allow_dimensions_outside_sorting_key"]["source"] == (
        "config/dev.toml; not applied: a server takes it from its own configuration")
    assert shown["clickhouse.settings.max_threads"]["source"] == "config/dev.toml"  # query settings are sent
    embedded = rows(load(project))
    assert embedded["clickhouse.merge_tree.allow_dimensions_outside_sorting_key"]["source"] == "config/dev.toml"


def test_overrides_set_one_entry_or_replace_a_table(project):
    s = load(project).with_overrides(clickhouse__settings__max_threads=4)
    assert dict(s.get("clickhouse.settings")) == {"max_threads": 4}
    assert s.sources["clickhouse.settings.max_threads"] == "override"
    s = s.with_overrides(clickhouse__settings={"max_block_size": 10})
    assert dict(s.get("clickhouse.settings")) == {"max_block_size": 10}
    assert "clickhouse.settings.max_threads" not in s.sources


@pytest.mark.parametrize("text, fragment", [
    ("[clickhouse]\nsettings = 3\n", "clickhouse.settings must be a table [clickhouse.settings]"),
    ("[clickhouse.settings]\n\"max-threads\" = 1\n", "'clickhouse.settings.max-threads' is not a setting name"),
    ("[clickhouse.merge_tree]\nx = [1, 2]\n", "clickhouse.merge_tree.x must be a string, number or boolean, got list"),
    ("[clickhouse.merge_tree.nested]\nx = 1\n", "clickhouse.merge_tree.nested must be a string, number or boolean"),
    ("[clickhouse.nosuch]\nx = 1\n", "unknown key clickhouse.nosuch"),
], ids=["not-a-table", "bad-name", "array", "nested-table", "unknown-table"])
def test_bad_setting_tables_in_toml(project, text, fragment):
    (project / "config" / "dev.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load(project)
    assert "config/dev.toml" in err.value.line() and fragment in err.value.line()


def test_a_whole_table_from_the_environment_is_refused(project):
    with pytest.raises(ConfigError, match="clickhouse.settings is a table; set one entry of it as "
                                          "CHOPS_CLICKHOUSE__SETTINGS__<NAME>=value"):
        load(project, CHOPS_CLICKHOUSE__SETTINGS="max_threads=1")
    with pytest.raises(ConfigError, match="unknown variable CHOPS_CLICKHOUSE__NOSUCH__X"):
        load(project, CHOPS_CLICKHOUSE__NOSUCH__X="1")


@pytest.mark.parametrize("url, fragment", [
    ("chdb:///srv/ch?backgroundpool.size=16", "unknown URL parameter 'backgroundpool.size' (accepted: database="),
    ("chdb:///srv/ch?max-threads=1", "unknown URL parameter 'max-threads'"),
    ("chdb:///srv/ch?max_threads=", "URL parameter max_threads has no value"),
    ("chdb:///srv/ch?max_threads=1&max_threads=2", "URL parameter max_threads is given twice"),
    ("http://h:8123/db?merge_tree.allow_dimensions_outside_sorting_key=1",
     "a client cannot set a server's MergeTree settings; they are in the server's own configuration"),
    ("https://h/db?server_settings.background_pool_size=16", "a client cannot set a server's server settings"),
], ids=["unknown-prefix", "bad-name", "no-value", "twice", "server-merge-tree", "server-server-settings"])
def test_bad_url_parameters_are_one_line_errors(project, url, fragment):
    with pytest.raises(ConfigError) as err:
        load(project, CLICKHOUSE_URL=url)
    assert err.value.line().startswith("environment CLICKHOUSE_URL: ") and fragment in err.value.line()


# --- [migrations.variables]: template variables of migrations --------------------------------------------------

def test_migration_variables_merge_entry_by_entry_upper_cased_with_a_source_each(project):
    (project / "config" / "test.toml").write_text(
        '[migrations.variables]\napp_cluster = "staging"\nAPP_REPLICATED = ""\nEVENTS_TTL_DAYS = 30\n')
    write_env(project, "CHOPS_MIGRATIONS__VARIABLES__APP_ENV=prod\n")
    s = load(project, CHOPS_ENV="test", CHOPS_MIGRATIONS__VARIABLES__APP_CLUSTER="main")

    # `app_cluster` in TOML and CHOPS_..._APP_CLUSTER are one variable: the environment's wins
    assert dict(s.get("migrations.variables")) == {"APP_CLUSTER": "main", "APP_REPLICATED": "", "EVENTS_TTL_DAYS": 30,
                                                   "APP_ENV": "prod"}
    shown = rows(s)
    assert shown["migrations.variables.APP_CLUSTER"]["source"] == (
        "environment CHOPS_MIGRATIONS__VARIABLES__APP_CLUSTER")
    assert shown["migrations.variables.EVENTS_TTL_DAYS"]["source"] == "config/test.toml"
    assert shown["migrations.variables.APP_ENV"]["source"] == ".env (CHOPS_MIGRATIONS__VARIABLES__APP_ENV)"
    (project / ".env").unlink()
    assert dict(load(project).get("migrations.variables")) == {}  # default.toml's table is empty
    assert dict(load(project).with_overrides(migrations__variables__db="x").get("migrations.variables")) == {"DB": "x"}


def test_bad_migration_variables(project):
    (project / "config" / "dev.toml").write_text('[migrations.variables]\n"APP-CLUSTER" = "x"\n')
    with pytest.raises(ConfigError, match="'migrations.variables.APP-CLUSTER' is not a setting name"):
        load(project)
    (project / "config" / "dev.toml").write_text("")
    with pytest.raises(ConfigError, match="migrations.variables is a table; set one entry of it as "
                                          "CHOPS_MIGRATIONS__VARIABLES__<NAME>=value"):
        load(project, CHOPS_MIGRATIONS__VARIABLES="x")


# --- issue 14: NaN and infinity, CHOPS_ENV_FILE, bytes that are not UTF-8 ----------------------------------------

@pytest.mark.parametrize("where, value", [
    ("environment", "nan"), ("environment", "inf"), ("environment", "-Infinity"),
    ("toml", "nan"), ("toml", "inf"), ("toml", "-inf"),
])
def test_nan_and_infinite_numbers_are_refused(project, where, value):
    # a NaN lock timeout compared false with every bound and waited for ever
    if where == "toml":
        (project / "config" / "dev.toml").write_text(f"[clickhouse]\nlock_timeout = {value}\n")
        env = {}
    else:
        env = {"CHOPS_CLICKHOUSE__LOCK_TIMEOUT": value}
    with pytest.raises(ConfigError, match="(clickhouse.lock_timeout|CHOPS_CLICKHOUSE__LOCK_TIMEOUT) must be a "
                                          "finite number") as err:
        load(project, **env)
    assert err.value.exit_code == 2


def test_nan_in_a_setting_table_is_refused(project):
    (project / "config" / "dev.toml").write_text("[clickhouse.settings]\nmax_execution_time = nan\n")
    with pytest.raises(ConfigError, match=r"clickhouse.settings.max_execution_time must be a finite number"):
        load(project)


def test_env_file_naming_a_directory_is_an_error(project):
    (project / "secrets").mkdir()
    with pytest.raises(ConfigError, match="is not a file") as err:
        load_settings(root=project, environ={"CHOPS_ENV_FILE": str(project / "secrets")})
    assert "CHOPS_ENV_FILE" in err.value.line()


def test_a_missing_env_file_is_still_no_env_file(project):
    assert load_settings(root=project, environ={"CHOPS_ENV_FILE": str(project / "absent")}).get("clickhouse.url") == ""


def test_toml_that_is_not_utf8_names_the_file_and_byte_offset(project):
    (project / "config" / "dev.toml").write_bytes(b'[clickhouse]\ndatabase = "caf\xe9"\n')
    with pytest.raises(ConfigError) as err:
        load(project)
    assert err.value.line() == ("config/dev.toml: not UTF-8: byte 0xe9 at offset 28 (line 2) "
                                "(save the file as UTF-8)")


def test_dotenv_that_is_not_utf8_names_the_file_and_byte_offset(project):
    path = project / ".env"
    path.write_bytes(b"CHOPS_PATHS__LOGS=ok\nCHOPS_CLICKHOUSE__URL=http://u:\xff@h/db\n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as err:
        load(project)
    line = err.value.line()
    assert line.startswith(".env: not UTF-8: byte 0xff at offset 52 (line 2)")


@pytest.mark.parametrize("password", ["Zq9xk@Wv7y", "Zq9xk/Wv7y", "Zq9xk?Wv7y#Jm4p"])
def test_a_password_with_unencoded_characters_is_never_shown(project, password):
    url = f"http://ana:{password}@ch.example:8123/events"
    try:
        shown = " ".join(str(r["value"]) for r in load(project, CLICKHOUSE_URL=url).describe())
    except ConfigError as exc:
        shown = exc.line()
    assert "ana:********@ch.example" in shown
    assert not any(piece in shown for piece in ("Zq9xk", "Wv7y", "Jm4p")), shown

"""Pipelines: definitions, the registry that discovers them in ``pipelines/``, and schedules.

A pipeline builds one day of its target table::

    from ops.pipelines import pipeline, checks

    @pipeline(name="daily_rollup", target="daily_rollup", schedule="30 1 * * *", depends_on=["events_ingest"],
              checks=[checks.not_empty(), checks.unique("event_type")])
    def build(run):
        run.db.command(f"INSERT INTO {run.staging} SELECT ... WHERE day = {{day:Date}}", {"day": run.day})

``build`` writes only into ``run.staging`` (a table made ``AS`` the target); the runner (``ops.pipelines.runner``) checks
the staging data and swaps the day in with ``REPLACE PARTITION``. Discovery imports every module of
``pipelines/``; a module that fails to import, a duplicate name or an invalid definition is reported with the
module's name, and every other pipeline still loads.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ops import ROOT
from ops.core.errors import BadInput
from ops.core.graph import find_cycle

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


# --- checks ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """A check on the staging data: ``sql`` counts the bad rows (0 passes). ``{table}`` is the staging table,
    ``{day:Date}`` the day being built. A check that is one aggregate over the table also has ``expr``, and one
    whose ``sql`` is a single value (``scalar``) can run as a subquery beside them, so the runner evaluates all such
    checks in one query. ``found``: an expression over ``{table}`` of what the check measured (the rows, a total),
    and ``says``: the failure in words (``{bad}``, ``{rows}``: "row" or "rows" by ``bad``, ``{found}``,
    ``{found_rows}``: "16 rows")."""

    name: str
    sql: str
    description: str
    expr: str | None = None
    found: str | None = None
    says: str = "{bad} offending {rows}"
    scalar: bool = False

    def render(self, table: str) -> str:
        return self.sql.replace("{table}", f"`{table}`")

    def explain(self, bad: int, found: Any = None) -> str:
        """What a failure of this check found, against what it expects: e.g. ``16 rows, expected at least 100``."""
        rows = int(found) if isinstance(found, (int, float)) else 0
        shown = f"{found:,}" if isinstance(found, int) else found
        return self.says.format(bad=f"{bad:,}", rows="row" if bad == 1 else "rows", found=shown,
                                found_rows=f"{rows:,} row{'' if rows == 1 else 's'}")


def _aggregate(name: str, expr: str, description: str, says: str = "{bad} offending {rows}",
               found: str | None = None) -> Check:
    return Check(name, f"SELECT {expr} FROM {{table}}", description, expr=expr, found=found, says=says)


class checks:
    """The checks a pipeline can declare. Each counts the offending rows; zero passes."""

    @staticmethod
    def not_empty() -> Check:
        """The day has at least one row (a pipeline with ``allow_empty=True`` has no use for it).

        Example: ``checks.not_empty()``"""
        return _aggregate("not_empty", "count() = 0", "the day has rows", says="0 rows, expected at least 1")

    @staticmethod
    def no_nulls(*columns: str) -> Check:
        """None of ``columns`` is NULL in any of the day's rows.

        Example: ``checks.no_nulls("user_id", "event_time")``"""
        for c in columns:
            _identifier(c, "column")
        expr = " OR ".join(f"isNull(`{c}`)" for c in columns)
        return _aggregate(f"no_nulls({', '.join(columns)})", f"countIf({expr})", f"{', '.join(columns)} never NULL",
                          says=f"{{bad}} {{rows}} with NULL in {' or '.join(columns)}, expected none")

    @staticmethod
    def unique(*columns: str) -> Check:
        """No two of the day's rows have the same values in ``columns`` (a key of the day).

        Example: ``checks.unique("event_type", "country")``"""
        for c in columns:
            _identifier(c, "column")
        cols = ", ".join(f"`{c}`" for c in columns)
        return _aggregate(f"unique({', '.join(columns)})", f"count() - uniqExact({cols})",
                          f"({', '.join(columns)}) unique", says="{bad} duplicate {rows}, expected none")

    @staticmethod
    def within_day(column: str, tz: str = "UTC") -> Check:
        """Every row's ``column`` (a date or time) falls on the day being built, in time zone ``tz``.

        Example: ``checks.within_day("event_time")``"""
        _identifier(column, "column")
        zone(tz)  # a real zone name, so it is safe as a literal
        if not re.fullmatch(r"[A-Za-z0-9_+\-/]+", tz):
            raise BadInput(f"time zone {tz!r} has unexpected characters")
        return _aggregate(f"within_day({column})", f"countIf(toDate(`{column}`, '{tz}') != {{day:Date}})",
                          f"every {column} falls on the day ({tz})",
                          says=f"{{bad}} {{rows}} with {column} outside the day ({tz}), expected none")

    @staticmethod
    def rows_between(minimum: int, maximum: int | None = None) -> Check:
        """The day has at least ``minimum`` rows (and at most ``maximum``, when given): a day with far fewer rows
        than usual is a broken source, not a quiet day.

        Example: ``checks.rows_between(100)``"""
        upper = "" if maximum is None else f" OR count() > {int(maximum)}"
        expected = f"at least {int(minimum):,}" if maximum is None else f"{int(minimum):,} to {int(maximum):,}"
        return _aggregate(f"rows_between({minimum}, {maximum})", f"count() < {int(minimum)}{upper}",
                          f"between {minimum} and {maximum if maximum is not None else 'any number of'} rows",
                          says=f"{{found_rows}}, expected {expected}", found="count()")

    @staticmethod
    def reconciles(column: str, source: str, day_column: str = "day") -> Check:
        """Totals tie out: sum(``column``) of the day's rows equals the number of the day's rows in ``source``
        (the offending count is how many are missing or extra).

        Example: ``checks.reconciles("events", source="events")``"""
        for name in (column, source, day_column):
            _identifier(name, "identifier")
        day_rows = f"(SELECT count() FROM `{source}` WHERE `{day_column}` = {{day:Date}})"
        # An aggregate with the source's count as its one subquery (which ``found`` shares: ClickHouse computes a
        # scalar subquery once per query): 1-1.5 ms a day cheaper than a scalar of two subqueries.
        return _aggregate("reconciles_with_" + source, f"abs(toInt64(sum(`{column}`)) - toInt64({day_rows}))",
                          f"sum({column}) equals the day's rows in {source}", found=day_rows,
                          says=f"sum({column}) is off by {{bad}}, expected {{found}} (the day's rows in {source})")

    @staticmethod
    def sql(name: str, query: str, description: str = "") -> Check:
        """A custom check: ``query`` returns the number of bad rows in ``{table}`` (the day in staging); it may use
        ``{day:Date}``.

        Example: ``checks.sql("no_negative_revenue", "SELECT countIf(revenue < 0) FROM {table}")``"""
        return Check(name, query, description or name)


# --- definitions ----------------------------------------------------------------------------------------------------

@dataclass
class Pipeline:
    """One pipeline's definition. ``build(run)`` fills ``run.staging`` with the day's rows."""

    name: str  # lowercase letters, digits and _; what every command calls it
    build: Callable[[Any], None]
    target: str  # the table the days are swapped into; it must exist (a migration makes it), partitioned by day
    description: str = ""  # one line for pipeline.list and the report
    schedule: str | None = None  # 5-field cron expression or @daily/@hourly...; None = run by hand/backfill only
    timezone: str = "UTC"  # the zone in which a "day" (a partition) is cut
    depends_on: tuple[str, ...] = ()  # pipelines that must have succeeded for the same day first
    backfillable: bool = True  # whether inv backfill may build its past days (False: by hand or cron only)
    checks: tuple[Check, ...] = ()  # checks.* run on the day in staging; one failing keeps the target as it was
    retries: int = 0  # extra attempts after a retryable failure (lost connection, timeout)
    retry_delay: float = 5.0  # seconds before the first retry; doubles each time
    timeout: float = 3600.0  # seconds a run may take
    allow_empty: bool = False  # an empty day is normal (otherwise building 0 rows fails the run)
    cron_date: str = "yesterday"  # the day a scheduled run builds: "yesterday" (complete day) or "today"
    # a backfill builds up to this many consecutive days in one statement and staging table (its SQL reads
    # {start:Date} and {end:Date}, both inclusive), then checks and swaps each day alone; a failing day fails alone
    batch_days: int = 1
    # inputs(run) -> the files the day's build reads (run.inputs() gives them to build); none, or a WorkFailed saying
    # what is missing, and the run refuses before building; a dry run says it would
    inputs: Callable[[Any], Sequence[Any]] | None = None
    module: str = ""

    def tz(self) -> tzinfo:
        return zone(self.timezone)

    def next_run(self, after: datetime | None = None) -> datetime | None:
        if not self.schedule:
            return None
        return next_run(self.schedule, after or datetime.now(timezone.utc))


def zone(name: str) -> tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(f"unknown time zone {name!r}") from None


def _identifier(name: str, what: str) -> str:
    if not TABLE.match(name or ""):
        raise BadInput(f"{what} {name!r} is not a valid identifier")
    return name


def validate_schedule(expr: str) -> str:
    from crontab import CronSlices

    if not isinstance(expr, str) or not CronSlices.is_valid(expr.strip()):
        raise BadInput(f"invalid cron schedule {expr!r} (five fields: minute hour day-of-month month day-of-week)")
    if len(expr.split()) not in (1, 5):
        raise BadInput(f"invalid cron schedule {expr!r}: five fields, no seconds or years")
    return expr.strip()


def next_run(expr: str, after: datetime) -> datetime:
    """The first minute after ``after`` (UTC) at which ``expr`` fires; cron's day-of-month/day-of-week OR rule."""
    from crontab import CronSlices

    slices = list(CronSlices(expr))
    minute, hour, dom, month, dow = (set(s) for s in slices)
    dom_any, dow_any = len(dom) >= 31, len(dow) >= 7
    dow = {d % 7 for d in dow}
    t = after.astimezone(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(366 * 24 * 60):
        if t.month in month and t.hour in hour and t.minute in minute:
            day_ok = t.day in dom
            week_ok = ((t.isoweekday() % 7) in dow)
            if (day_ok and week_ok) if (dom_any or dow_any) else (day_ok or week_ok):
                return t
        t += timedelta(minutes=1)
    raise BadInput(f"cron schedule {expr!r} never fires")


# --- the registry ---------------------------------------------------------------------------------------------------

_collecting: list[Pipeline] | None = None


def pipeline(*, name: str, target: str, **options: Any) -> Callable[[Callable], Callable]:
    """Declare the decorated ``build(run)`` function a pipeline. See :class:`Pipeline` for the options.

    A pipeline is one module in ``pipelines/`` with one decorated function; it builds one day at a time::

        from ops.pipelines import checks, pipeline

        @pipeline(name="daily_counts", target="daily_counts", schedule="30 1 * * *", depends_on=["events_ingest"],
                  checks=[checks.not_empty(), checks.unique("event_type")])
        def build(run):
            run.db.command(f"INSERT INTO {run.staging} SELECT day, event_type, count() FROM events "
                           "WHERE day = {day:Date} GROUP BY day, event_type", run.params())

    Its target comes from a migration (``inv db.new daily_counts`` writes the files)::

        CREATE TABLE daily_counts (day Date, event_type LowCardinality(String), events UInt64)
        ENGINE = MergeTree PARTITION BY day ORDER BY event_type

    The contract:

    * **Day partitions.** The target is partitioned by day (``PARTITION BY day``, a ``Date`` column; the day is cut
      in the pipeline's ``timezone``), made by a migration. A run builds exactly one day, and only that day's rows.
    * **Parameters, not formatting.** The day reaches SQL as the query parameter ``{day:Date}``
      (``run.params()``, plus any of your own: ``run.params(country="DE")`` is ``{country:String}``); a value is
      never formatted into the SQL text (only table names are: ``run.staging`` and the tables you read).
    * **Idempotent by construction.** ``build`` writes only into ``run.staging``, a fresh table made ``AS`` the
      target, and computes the whole day from its sources. The runner runs the checks on staging, then swaps the
      day in with ``REPLACE PARTITION`` (atomic): a re-run replaces the day, a crash or a failed check leaves the
      target as it was, and nothing is ever appended twice. Do not write to the target or to other tables.
    * **Dependencies.** ``depends_on`` names the pipelines whose same day must have succeeded first; a run refuses
      until they have, a backfill builds them first, and a downstream day built before its upstream day was rebuilt
      shows as stale (``inv backfill --reprocess stale`` rebuilds it).
    * **Failures.** An exception fails the attempt (recorded in the run ledger with its error and log); a
      retryable one (a lost connection, a timeout) is tried again ``retries`` times. A day that builds no rows
      fails unless ``allow_empty``. Raise ``ops.errors.WorkFailed("what is wrong")`` for a failure in your words.
    """

    def register(build: Callable) -> Callable:
        module = getattr(build, "__module__", "")
        definition = _define(name=name, target=target, build=build, module=module, **options)
        if _collecting is not None:
            _collecting.append(definition)
        build.pipeline = definition
        return build

    return register


def _define(**kwargs: Any) -> Pipeline:
    known = set(Pipeline.__dataclass_fields__)
    unknown = set(kwargs) - known
    if unknown:
        raise BadInput(f"unknown pipeline option(s): {', '.join(sorted(unknown))}")
    p = Pipeline(**kwargs)
    if not NAME.match(p.name or ""):
        raise BadInput(f"pipeline name {p.name!r} must be lowercase letters, digits and _ (starting with a letter)")
    _identifier(p.target, "target table")
    if p.schedule is not None:
        p.schedule = validate_schedule(p.schedule)
    p.tz()
    p.depends_on = tuple(p.depends_on)
    p.checks = tuple(p.checks)
    for c in p.checks:
        if not isinstance(c, Check):
            raise BadInput(f"checks of {p.name} must be ops.pipelines.checks.* objects, got {c!r}")
    for number, what in ((p.retries, "retries"), (p.retry_delay, "retry_delay"), (p.timeout, "timeout")):
        if not isinstance(number, (int, float)) or number < 0:
            raise BadInput(f"{what} of {p.name} must be a number >= 0")
    if p.timeout == 0:
        raise BadInput(f"timeout of {p.name} must be positive")
    if p.inputs is not None and not callable(p.inputs):
        raise BadInput(f"inputs of {p.name} must be a function of the run that returns the files it reads")
    if p.cron_date not in ("yesterday", "today"):
        raise BadInput(f"cron_date of {p.name} must be 'yesterday' or 'today'")
    if p.name in p.depends_on:
        raise BadInput(f"{p.name} depends on itself")
    _check_batch(p)
    return p


def _check_batch(p: Pipeline) -> None:
    """A range build (``batch_days`` > 1) must read ``{start:Date}`` and ``{end:Date}`` (its module's text names
    both), and cannot declare inputs (files are found per day)."""
    if not isinstance(p.batch_days, int) or isinstance(p.batch_days, bool) or p.batch_days < 1:
        raise BadInput(f"batch_days of {p.name} must be a whole number >= 1, got {p.batch_days!r}")
    if p.batch_days == 1:
        return
    if p.inputs is not None:
        raise BadInput(f"{p.name}: batch_days cannot be combined with inputs (files are found per day)")
    try:  # the module's text: its SQL may be a constant beside the build
        source = Path(inspect.getsourcefile(p.build) or "").read_text()
    except (OSError, TypeError):
        return  # no source to read (made at run time): the build is trusted
    missing = [name for name in ("start", "end") if f"{{{name}:Date}}" not in source.replace("{{", "{")]
    if missing:
        raise BadInput(f"{p.name} declares batch_days={p.batch_days}, but its SQL does not use "
                       f"{' or '.join('{' + m + ':Date}' for m in missing)}",
                       hint="a range build reads WHERE day BETWEEN {start:Date} AND {end:Date}")


@dataclass
class Registry:
    """The pipelines found in a directory, and what failed to load (module -> one-line reason).

    ``declared``: pipeline name -> module, read from the files without running them (see :func:`declared`), for
    every module whose declarations are literal, broken ones included. ``selected``: the names a partial load was
    asked for (None: every module was imported)."""

    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    declared: dict[str, str] = field(default_factory=dict)
    selected: tuple[str, ...] | None = None

    def get(self, name: str) -> Pipeline:
        if name in self.pipelines:
            return self.pipelines[name]
        broken = [m for m in self.errors if m.rsplit(".", 1)[-1] == name or self.declared.get(name) == m]
        if broken:
            raise BadInput(f"pipeline {name!r} did not load: {self.errors[broken[0]]}")
        close = difflib.get_close_matches(name, list(self.pipelines), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(self.pipelines)) or 'none'}"
        raise BadInput(f"unknown pipeline {name!r}", hint=hint)

    def names(self) -> list[str]:
        return sorted(self.pipelines)

    def known(self) -> set[str]:
        """Every pipeline name this folder defines, those of modules that did not load included (as far as their
        files tell, or by the module's name): a run of any other pipeline is of one that no longer exists."""
        return set(self.pipelines) | set(self.declared) | {m.rsplit(".", 1)[-1] for m in self.errors}

    def ordered(self, names: Iterable[str] | None = None) -> list[Pipeline]:
        """Pipelines in dependency order (dependencies first), ties by name."""
        chosen = set(self.pipelines if names is None else names)
        done: list[str] = []
        visiting: set[str] = set()

        def visit(n: str) -> None:
            if n in done:
                return
            visiting.add(n)
            for dep in sorted(self.pipelines[n].depends_on):
                if dep in chosen and dep not in done:
                    visit(dep)
            visiting.discard(n)
            done.append(n)

        for n in sorted(chosen):
            visit(n)
        return [self.pipelines[n] for n in done]


# --- discovery ------------------------------------------------------------------------------------------------------

def declared(path: Path) -> dict[str, tuple[str, ...]] | None:
    """The pipelines a module declares, read from its text without running it: ``{name: depends_on}`` of every
    ``pipeline(name=..., depends_on=...)`` call (``@pipeline(...)``, ``@pipelines.pipeline(...)``). None when the
    text cannot tell: not Python, no such call, or a call whose name or depends_on is not a literal (a loop that
    makes pipelines, ``**options``): such a module is imported whenever pipelines are looked for."""
    import ast

    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return None
    found: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(tree):
        func = node.func if isinstance(node, ast.Call) else None
        if getattr(func, "id", None) != "pipeline" and getattr(func, "attr", None) != "pipeline":
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        if None in keywords or "name" not in keywords:
            return None
        try:
            name = ast.literal_eval(keywords["name"])
            depends = tuple(ast.literal_eval(keywords["depends_on"])) if "depends_on" in keywords else ()
        except (ValueError, TypeError, SyntaxError):
            return None
        if not isinstance(name, str) or not all(isinstance(d, str) for d in depends):
            return None
        found[name] = depends
    return found or None


def _to_import(files: dict[Path, dict[str, tuple[str, ...]] | None], only: Iterable[str]) -> list[Path]:
    """The modules a run of ``only`` needs: those that declare them and their upstream pipelines (read by
    :func:`declared`), plus every module whose text cannot tell. Every module when a needed name is declared
    nowhere (it may be made by one of those, or not exist: importing all gives the right error)."""
    declaring = {name: path for path, names in files.items() for name in (names or {})}
    depends = {name: deps for names in files.values() for name, deps in (names or {}).items()}
    needed, todo = set(), list(only)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        if name not in declaring:
            return sorted(files)
        needed.add(name)
        todo.extend(depends[name])
    return sorted(path for path, names in files.items() if names is None or set(names) & needed)


def _import(path: Path, module_name: str) -> tuple[list[Pipeline], str | None]:
    """Run one pipeline module: the pipelines it defined, or the one-line reason it is broken. Any exception counts,
    ``SystemExit`` included (a module that calls ``sys.exit`` must not end the command that looks for pipelines);
    ``KeyboardInterrupt`` still interrupts."""
    global _collecting
    found: list[Pipeline] = []
    _collecting = found
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        sys.modules.pop(module_name, None)
        raise
    except BadInput as exc:
        sys.modules.pop(module_name, None)
        return [], f"{path.name}: {exc.message}"
    except BaseException as exc:  # any error in a user's module: report it, keep loading the others
        sys.modules.pop(module_name, None)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        where = f" (line {frames[-1].lineno})" if frames else ""
        if isinstance(exc, SystemExit):
            return [], f"{path.name}{where}: calls sys.exit({exc.code!r}) when imported"
        return [], f"{path.name}{where}: {type(exc).__name__}: {' '.join(str(exc).split())}"
    finally:
        _collecting = None
    return found, None


def load_pipelines(settings=None, directory: Path | None = None, only: Iterable[str] | None = None) -> Registry:
    """Import every module of ``pipelines/`` (or ``directory``) and collect its pipelines. With ``only``, import just
    the modules those pipelines and their upstream ones need (a cron run), as far as the files tell."""
    if directory is None:
        directory = settings.path("pipelines.dir") if settings is not None else ROOT / "pipelines"
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInput(f"pipelines directory {directory} does not exist", hint="set pipelines.dir")
    package = directory.name if directory == ROOT / "pipelines" else f"_chops_pipelines_{abs(hash(str(directory)))}"
    files = {path: declared(path) for path in sorted(directory.glob("*.py")) if not path.name.startswith("_")}
    registry = Registry(selected=tuple(only) if only is not None else None)
    registry.declared = {name: f"{package}.{path.stem}" for path, names in files.items() for name in (names or {})}
    for path in (_to_import(files, only) if only is not None else sorted(files)):
        module_name = f"{package}.{path.stem}"
        found, error = _import(path, module_name)
        if error is not None:
            registry.errors[module_name] = error
        for p in found:
            p.module = module_name
            if p.name in registry.pipelines:
                other = registry.pipelines.pop(p.name).module
                registry.errors[module_name] = (f"{path.name}: pipeline {p.name!r} is already defined in "
                                                f"{other.rsplit('.', 1)[-1]}.py")
                registry.errors[other] = f"{other.rsplit('.', 1)[-1]}.py: pipeline {p.name!r} is also defined in {path.name}"
                continue
            registry.pipelines[p.name] = p
    _drop_unrunnable(registry)
    return registry


def _drop_unrunnable(registry: Registry) -> None:
    """A pipeline whose depends_on names a pipeline that did not load, or that is in a dependency cycle, cannot
    run: it moves to the errors."""
    changed = True
    while changed:
        changed = False
        for p in list(registry.pipelines.values()):
            missing = [d for d in p.depends_on if d not in registry.pipelines]
            if missing:
                registry.errors[p.module] = f"{p.module.rsplit('.', 1)[-1]}.py: {p.name} depends on unknown " \
                                            f"pipeline(s) {', '.join(missing)}"
                del registry.pipelines[p.name]
                changed = True
    cycle = find_cycle({n: list(p.depends_on) for n, p in registry.pipelines.items()})
    if cycle:
        for n in cycle:
            p = registry.pipelines.pop(n)
            registry.errors[p.module] = f"{p.module.rsplit('.', 1)[-1]}.py: dependency cycle {' -> '.join(cycle)}"


# --- dates ----------------------------------------------------------------------------------------------------------

# ClickHouse's Date: a day outside this range is clamped silently (a ledger row of 1969-12-31 lands on 1970-01-01).
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2149, 6, 6)


def in_date_range(day: date, what: str = "date") -> date:
    """``day``, or bad input when ClickHouse's Date cannot hold it (1970-01-01 .. 2149-06-06)."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BadInput(f"{what} {day} is outside ClickHouse's Date range ({FIRST_DAY} .. {LAST_DAY})")
    return day


def parse_day(text: str, tz: tzinfo, allow_future: bool = False, today: date | None = None) -> date:
    """``YYYY-MM-DD``, ``today`` or ``yesterday`` (in ``tz``) as a date; impossible, future (unless
    ``allow_future``) and out-of-range (see :func:`in_date_range`) dates are bad input."""
    today = today or datetime.now(tz).date()
    raw = (text or "").strip().lower()
    if raw == "today":
        return in_date_range(today)
    if raw == "yesterday":
        return in_date_range(today - timedelta(days=1))
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise BadInput(f"date {text!r} must be YYYY-MM-DD, today or yesterday")
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadInput(f"date {text!r} does not exist") from None
    in_date_range(day)
    if day > today and not allow_future:
        raise BadInput(f"date {day} is in the future (today is {today} in {getattr(tz, 'key', tz)})",
                       hint="pass --allow-future if you mean it")
    return day


def days_between(start: date, end: date) -> Sequence[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]

"""daily_rollup: events, distinct users and revenue per day, event type and country (table `daily_rollup`).

As a template, this shows the most common pipeline: one SQL statement that aggregates another pipeline's table
for the day into ``run.staging``, with the day passed as a query parameter (``{day:Date}``, never formatted
into the SQL). It also shows:

* ``depends_on``: the runner refuses to build a day until events_ingest has succeeded for it;
* a reconciliation check (``checks.reconciles``): the rollup must account for every event of the day, or nothing is
  swapped in. A check's query returns the number of offending rows; here, the events missing (or extra).
"""

from ops.pipelines import checks, pipeline

RECONCILES = checks.reconciles("events", source="events")  # every event of the day is accounted for


@pipeline(
    name="daily_rollup",
    description="events, users and revenue per day, event type and country",
    target="daily_rollup",
    schedule="30 1 * * *",
    depends_on=["events_ingest"],
    checks=[checks.not_empty(), checks.unique("event_type", "country"), RECONCILES],
)
def build(run):
    run.db.command(
        f"""
        INSERT INTO `{run.staging}` (day, event_type, country, events, users, revenue)
        SELECT
            day,
            event_type,
            country,
            count() AS events,
            uniqExact(user_id) AS users,
            CAST(sum(revenue) AS Decimal(18, 2)) AS revenue
        FROM events
        WHERE day = {{day:Date}}
        GROUP BY day, event_type, country
        """,
        run.params(),
    )

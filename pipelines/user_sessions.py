"""user_sessions: the day's events cut into user sessions (table `user_sessions`).

As a template, this shows a transformation that aggregates rows into something new, using window functions:
a user's events in time order start a new session when more than 30 minutes passed since the previous one
(``lagInFrame``); a running sum of those starts numbers the sessions; grouping by it gives one row per session.
It is still one ``INSERT … SELECT`` into ``run.staging`` for one day, so a re-run replaces the day. Sessions
are cut at midnight UTC: a day is a partition, and a partition is built from that day's events only.

Its checks: the staging data is not empty, (user_id, session_no) is unique, and every event of the day is in
exactly one session (sum of session events = the day's events).
"""

from ops.pipelines import checks, pipeline

GAP_MS = 30 * 60 * 1000  # a gap longer than this starts a new session

RECONCILES = checks.reconciles("events", source="events")  # every event of the day is accounted for


@pipeline(
    name="user_sessions",
    description="the day's events cut into user sessions (30-minute gap)",
    target="user_sessions",
    schedule="45 1 * * *",
    depends_on=["events_ingest"],
    checks=[checks.not_empty(), checks.unique("user_id", "session_no"), RECONCILES],
)
def build(run):
    run.db.command(
        f"""
        INSERT INTO `{run.staging}`
            (day, user_id, session_no, started_at, ended_at, events, duration_s, converted, revenue)
        SELECT
            {{day:Date}} AS day,
            user_id,
            session_no,
            min(event_time) AS started_at,
            max(event_time) AS ended_at,
            count() AS events,
            intDiv(toUnixTimestamp64Milli(max(event_time)) - toUnixTimestamp64Milli(min(event_time)), 1000)
                AS duration_s,
            max(event_type = 'purchase') AS converted,
            CAST(sum(revenue) AS Decimal(18, 2)) AS revenue
        FROM
        (
            SELECT
                user_id, event_time, event_type, revenue,
                sum(starts_session) OVER (PARTITION BY user_id ORDER BY event_time, event_id
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_no
            FROM
            (
                SELECT
                    user_id, event_time, event_id, event_type, revenue,
                    row_number() OVER w = 1
                        OR toUnixTimestamp64Milli(event_time)
                           - toUnixTimestamp64Milli(lagInFrame(event_time) OVER w) > {{gap:Int64}}
                        AS starts_session
                FROM events
                WHERE day = {{day:Date}}
                WINDOW w AS (PARTITION BY user_id ORDER BY event_time, event_id
                             ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
            )
        )
        GROUP BY user_id, session_no
        """,
        run.params(gap=GAP_MS),
    )

-- 0004_user_sessions: one row per user session of a day, built from `events` by the user_sessions pipeline.
--
-- A session is a user's run of events with no gap longer than 30 minutes; sessions are cut at midnight UTC
-- (a day is a partition), and numbered per user and day from 1.

CREATE TABLE IF NOT EXISTS user_sessions ON CLUSTER {cluster}
(
    day         Date,
    user_id     UInt64,
    session_no  UInt32,
    started_at  DateTime64(3, 'UTC'),
    ended_at    DateTime64(3, 'UTC'),
    events      UInt32,
    duration_s  UInt32,
    converted   UInt8,
    revenue     Decimal(18, 2)
)
ENGINE = MergeTree
PARTITION BY day
ORDER BY (day, user_id, session_no)
SETTINGS index_granularity = 8192;

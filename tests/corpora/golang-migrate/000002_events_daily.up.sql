-- Daily rollup of events, fed by a materialized view.
CREATE TABLE IF NOT EXISTS events_daily ON CLUSTER {{.CLUSTER}}
(
    event_date Date,
    event_type LowCardinality(String),
    users AggregateFunction(uniq, UInt64),
    events SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(event_date)
ORDER BY (event_type, event_date);

CREATE MATERIALIZED VIEW IF NOT EXISTS events_daily_mv ON CLUSTER {{.CLUSTER}}
TO events_daily
AS SELECT
    event_date,
    event_type,
    uniqState(user_id) AS users,
    count() AS events
FROM events
GROUP BY event_date, event_type;

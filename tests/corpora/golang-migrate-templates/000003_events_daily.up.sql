CREATE TABLE IF NOT EXISTS analytics.events_daily ON CLUSTER {{ .APP_CLUSTER }}
(
    `day` Date,
    `project_id` UInt32,
    `event` LowCardinality(String),
    `events` AggregateFunction(count),
    `users` AggregateFunction(uniq, String)
)
ENGINE = {{.APP_REPLICATED}}AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, event, day);

-- daily rollup, fed as events arrive
CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.events_daily_mv ON CLUSTER {{ .APP_CLUSTER }}
TO analytics.events_daily
AS SELECT
    toDate(timestamp) AS day,
    project_id,
    event,
    countState() AS events,
    uniqState(distinct_id) AS users
FROM analytics.events
GROUP BY day, project_id, event;

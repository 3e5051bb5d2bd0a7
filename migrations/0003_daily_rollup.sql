-- 0003_daily_rollup: events per day, event type and country, built from `events` by the daily_rollup pipeline.
--
-- One partition per day: the runner builds a day in staging and swaps it in with REPLACE PARTITION.

CREATE TABLE IF NOT EXISTS daily_rollup ON CLUSTER {cluster}
(
    day         Date,
    event_type  LowCardinality(String),
    country     LowCardinality(String),
    events      UInt64,
    users       UInt64,
    revenue     Decimal(18, 2)
)
ENGINE = MergeTree
PARTITION BY day
ORDER BY (day, event_type, country)
SETTINGS index_granularity = 8192;

-- 0002_events: raw events, loaded from inbox files by the events_ingest pipeline (one partition per day).

CREATE TABLE IF NOT EXISTS events ON CLUSTER {cluster}
(
    event_time  DateTime64(3, 'UTC'),
    event_id    UUID,
    user_id     UInt64,
    event_type  LowCardinality(String),
    country     LowCardinality(String),
    revenue     Decimal(12, 2) DEFAULT 0,
    day         Date DEFAULT toDate(event_time, 'UTC')
)
ENGINE = MergeTree
PARTITION BY day
ORDER BY (event_type, user_id, event_time)
SETTINGS index_granularity = 8192;

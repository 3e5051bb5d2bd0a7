CREATE TABLE IF NOT EXISTS events ON CLUSTER {{.CLUSTER}}
(
    event_date Date DEFAULT toDate(event_time),
    event_time DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    user_id UInt64 CODEC(T64, ZSTD(1)),
    event_type LowCardinality(String),
    country LowCardinality(String) DEFAULT '',
    properties String CODEC(ZSTD(3))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(event_date)
ORDER BY (event_type, event_date, user_id)
TTL event_date + INTERVAL 13 MONTH DELETE
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS analytics.events ON CLUSTER {{.APP_CLUSTER}}
(
    `timestamp` DateTime64(3) CODEC(DoubleDelta, ZSTD(1)),
    `project_id` UInt32 CODEC(ZSTD(1)),
    `event` LowCardinality(String) CODEC(ZSTD(1)),
    `distinct_id` String CODEC(ZSTD(1)),
    `properties` Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    INDEX idx_event event TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = {{.APP_REPLICATED}}MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (project_id, event, timestamp)
TTL toDateTime(timestamp) + INTERVAL 90 DAY DELETE
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

-- +goose Up
CREATE TABLE IF NOT EXISTS page_views_hourly
(
    hour DateTime,
    site_id UInt32,
    views UInt64,
    total_duration_ms UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site_id, hour)
TTL hour + INTERVAL 1 YEAR;

-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS page_views_hourly_mv TO page_views_hourly AS
SELECT
    toStartOfHour(ts) AS hour,
    site_id,
    count() AS views,
    sum(duration_ms) AS total_duration_ms
FROM page_views
GROUP BY hour, site_id;
-- +goose StatementEnd

-- +goose Down
DROP VIEW IF EXISTS page_views_hourly_mv;
DROP TABLE IF EXISTS page_views_hourly;

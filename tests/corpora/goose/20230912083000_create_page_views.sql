-- +goose Up
-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS page_views
(
    ts DateTime CODEC(DoubleDelta, LZ4),
    site_id UInt32,
    path String,
    referrer String DEFAULT '',
    duration_ms UInt32 CODEC(T64, LZ4),
    session_id UUID
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (site_id, ts)
TTL ts + INTERVAL 90 DAY
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP TABLE IF EXISTS page_views
-- +goose StatementEnd

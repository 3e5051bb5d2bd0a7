-- +goose Up
-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS sessions
(
    session_id UUID,
    user_id UInt64,
    started_at DateTime,
    ended_at Nullable(DateTime),
    user_agent String DEFAULT '',
    sign Int8
)
ENGINE = CollapsingMergeTree(sign)
PARTITION BY toYYYYMM(started_at)
ORDER BY (user_id, started_at, session_id)
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP TABLE IF EXISTS sessions
-- +goose StatementEnd

-- +goose Up
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS country LowCardinality(String) DEFAULT '' AFTER user_agent;
-- +goose StatementBegin
ALTER TABLE sessions
    ADD INDEX IF NOT EXISTS idx_country country TYPE set(256) GRANULARITY 4,
    MODIFY SETTING merge_with_ttl_timeout = 3600
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
ALTER TABLE sessions DROP INDEX IF EXISTS idx_country
-- +goose StatementEnd
ALTER TABLE sessions DROP COLUMN IF EXISTS country;

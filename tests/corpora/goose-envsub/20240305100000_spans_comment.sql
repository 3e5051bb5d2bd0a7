-- +goose Up
-- +goose ENVSUB ON
ALTER TABLE ${CLICKHOUSE_DATABASE}.spans MODIFY COMMENT 'spans of ${DEPLOY_ENV:-dev}, kept ${SPANS_TTL_DAYS:-30} days';
-- +goose ENVSUB OFF

-- +goose Down
-- +goose ENVSUB ON
ALTER TABLE ${CLICKHOUSE_DATABASE}.spans MODIFY COMMENT '';

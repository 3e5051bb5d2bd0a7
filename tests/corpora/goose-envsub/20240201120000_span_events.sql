-- +goose Up
-- +goose StatementBegin
ALTER TABLE
-- +goose ENVSUB ON
    ${CLICKHOUSE_DATABASE?CLICKHOUSE_DATABASE must name the telemetry database}.spans
-- +goose ENVSUB OFF
    ADD COLUMN IF NOT EXISTS `Events.Name` Array(LowCardinality(String))
        COMMENT 'span event names, as sent (${NOT_EXPANDED}: ENVSUB is off on this line)' CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS `Events.Timestamp` Array(DateTime64(9)) CODEC(ZSTD(1));
-- +goose StatementEnd

-- +goose Down
-- +goose ENVSUB ON
-- ALTER TABLE ${CLICKHOUSE_DATABASE}.spans DROP COLUMN IF EXISTS `Events.Attributes`;
ALTER TABLE ${CLICKHOUSE_DATABASE}.spans
    DROP COLUMN IF EXISTS `Events.Timestamp`,
    DROP COLUMN IF EXISTS `Events.Name`;
-- +goose ENVSUB OFF

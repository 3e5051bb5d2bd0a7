-- +goose ENVSUB ON
-- +goose Up
CREATE TABLE IF NOT EXISTS $CLICKHOUSE_DATABASE.trace_durations
(
    `ServiceName` LowCardinality(String),
    `Hour` DateTime,
    `Count` AggregateFunction(count),
    `P95` AggregateFunction(quantile(0.95), UInt64)
)
ENGINE = ${CLICKHOUSE_ENGINE_PREFIX:-}AggregatingMergeTree
ORDER BY (ServiceName, Hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${CLICKHOUSE_DATABASE}.trace_durations_mv
TO ${CLICKHOUSE_DATABASE}.trace_durations AS
SELECT ServiceName, toStartOfHour(Timestamp) AS Hour, countState() AS Count, quantileState(0.95)(Duration) AS P95
FROM ${CLICKHOUSE_DATABASE}.spans
GROUP BY ServiceName, Hour;

-- +goose Down
DROP VIEW IF EXISTS ${CLICKHOUSE_DATABASE}.trace_durations_mv;
DROP TABLE IF EXISTS ${CLICKHOUSE_DATABASE}.trace_durations;

-- The rollup table and the view that feeds it, applied as two steps.
-- migrate:up
CREATE TABLE IF NOT EXISTS revenue_daily
(
    day Date,
    status LowCardinality(String),
    orders UInt64,
    revenue Decimal(38, 2)
)
ENGINE = SummingMergeTree
ORDER BY (day, status)

-- migrate:down
DROP TABLE IF EXISTS revenue_daily

-- migrate:up transaction:false
CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_daily_mv TO revenue_daily AS
SELECT toDate(created_at) AS day, toString(status) AS status, count() AS orders, sum(total) AS revenue
FROM orders
GROUP BY day, status

-- migrate:down transaction:false
DROP VIEW IF EXISTS revenue_daily_mv

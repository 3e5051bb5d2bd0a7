CREATE TABLE IF NOT EXISTS orders_by_day
(
    day Date,
    country LowCardinality(String),
    orders UInt64,
    revenue Decimal(18, 2)
)
ENGINE = SummingMergeTree
ORDER BY (day, country);

CREATE MATERIALIZED VIEW IF NOT EXISTS orders_by_day_mv TO orders_by_day AS
SELECT toDate(o.created_at) AS day, c.country AS country, count() AS orders, sum(o.amount) AS revenue
FROM orders AS o
LEFT JOIN customers AS c ON c.customer_id = o.customer_id
GROUP BY day, country;

-- orders as the shop writes them; one row per order
CREATE TABLE IF NOT EXISTS orders
(
    order_id UInt64,
    customer_id UInt64,
    created_at DateTime,
    amount Decimal(12, 2),
    status LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (customer_id, order_id);

-- migrate:up
CREATE TABLE IF NOT EXISTS orders
(
    order_id UInt64,
    customer_id UInt64,
    created_at DateTime64(3) CODEC(Delta, ZSTD),
    status Enum8('new' = 1, 'paid' = 2, 'shipped' = 3, 'cancelled' = 4),
    total Decimal(18, 2)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (customer_id, order_id);

-- migrate:down
DROP TABLE IF EXISTS orders;

-- migrate:up
CREATE TABLE IF NOT EXISTS order_items
(
    order_id UInt64,
    line UInt16,
    sku LowCardinality(String),
    quantity UInt32,
    price Decimal(18, 2) CODEC(ZSTD(3))
)
ENGINE = MergeTree
ORDER BY (order_id, line);

-- migrate:down
DROP TABLE IF EXISTS order_items;

CREATE TABLE IF NOT EXISTS customers
(
    customer_id UInt64,
    email String,
    country LowCardinality(String) DEFAULT '',
    signed_up_at DateTime
)
ENGINE = ReplacingMergeTree
ORDER BY customer_id;

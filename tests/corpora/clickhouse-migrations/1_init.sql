# clickhouse-migrations: one file per version, applied in the order of the number before the underscore.
CREATE TABLE IF NOT EXISTS visits
(
    visit_id UInt64,
    site LowCardinality(String),
    url String,
    visited_at DateTime
)
ENGINE = MergeTree
ORDER BY (site, visited_at);

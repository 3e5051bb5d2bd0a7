CREATE TABLE IF NOT EXISTS users ON CLUSTER {{.CLUSTER}}
(
    user_id UInt64,
    email String,
    plan LowCardinality(String) DEFAULT 'free',
    updated_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY user_id;

CREATE DICTIONARY IF NOT EXISTS users_plan ON CLUSTER {{.CLUSTER}}
(
    user_id UInt64,
    plan String DEFAULT 'free'
)
PRIMARY KEY user_id
SOURCE(CLICKHOUSE(TABLE 'users'))
LIFETIME(MIN 300 MAX 600)
LAYOUT(HASHED());

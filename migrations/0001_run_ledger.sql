-- 0001_run_ledger: the run ledger, one row per attempt of a pipeline partition.
--
-- Every run (cron, manual, backfill) appends a row when it starts (status 'running') and another when it
-- ends; ReplacingMergeTree keyed by the attempt keeps the newest, so `FINAL` (or argMax by `updated_at`)
-- reads each attempt's latest state. An attempt still 'running' whose pid is gone died without finishing.

CREATE TABLE IF NOT EXISTS run_ledger ON CLUSTER {cluster}
(
    run_id        UUID,
    pipeline      LowCardinality(String),
    partition     Date,
    attempt       UInt32,
    status        Enum8('running' = 1, 'succeeded' = 2, 'failed' = 3, 'killed' = 4),
    trigger       Enum8('manual' = 1, 'cron' = 2, 'backfill' = 3),
    plan_id       String DEFAULT '',
    rows_written  UInt64 DEFAULT 0,
    started_at    DateTime64(6, 'UTC'),
    finished_at   Nullable(DateTime64(6, 'UTC')),
    duration_s    Nullable(Float64),
    error         String DEFAULT '',
    host          LowCardinality(String),
    pid           UInt32,
    code_version  String,
    log_path      String DEFAULT '',
    updated_at    DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(partition)
ORDER BY (pipeline, partition, run_id)
SETTINGS index_granularity = 8192;

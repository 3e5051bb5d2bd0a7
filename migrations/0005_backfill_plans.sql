-- 0005_backfill_plans: frozen backfill plans, stored before a backfill runs anything.
--
-- A plan lists its (pipeline, day) partitions in execution order and what it skipped; progress is read from
-- run_ledger (plan_id), so resuming a plan does exactly what is missing.

CREATE TABLE IF NOT EXISTS backfill_plans ON CLUSTER {cluster}
(
    plan_id     String,
    created_at  DateTime64(6, 'UTC'),
    created_by  String,
    start       Date,
    end         Date,
    jobs        Array(String),
    options     String,
    items       String,
    skipped     String
)
ENGINE = MergeTree
ORDER BY (created_at, plan_id)
SETTINGS index_granularity = 8192;

-- 0006_run_acks: acknowledged failures, one row per acknowledged attempt of the run ledger.
--
-- `inv proc.ack` writes a row: who acknowledged the failed (or killed, or died) attempt `run_id`, when, and why.
-- `inv proc.check` does not fail on an acknowledged attempt; `inv pipeline.history` shows who acknowledged it.
-- The ledger's rows stay as the run wrote them: an acknowledgement is a person's word about a run, kept beside it.
-- Acknowledging an attempt again replaces the row (ReplacingMergeTree by `acked_at`; read with FINAL).

CREATE TABLE IF NOT EXISTS run_acks ON CLUSTER {cluster}
(
    run_id     UUID,
    pipeline   LowCardinality(String),
    partition  Date,
    status     LowCardinality(String),
    acked_by   String,
    acked_at   DateTime64(6, 'UTC'),
    note       String DEFAULT ''
)
ENGINE = ReplacingMergeTree(acked_at)
ORDER BY run_id
SETTINGS index_granularity = 8192;

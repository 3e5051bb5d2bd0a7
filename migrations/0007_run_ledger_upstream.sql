-- 0007_run_ledger_upstream: for each run, the run ids of the upstream partitions it read.
--
-- A run of a pipeline with depends_on records, per dependency, that dependency's newest succeeded run for the same
-- day when the run started. A partition is stale when that is no longer the dependency's newest success (the
-- upstream day was rebuilt since): one query over the ledger, without reading any data. Rows written before this
-- migration have an empty map; for them chops compares start times instead.

ALTER TABLE run_ledger ON CLUSTER {cluster}
    ADD COLUMN IF NOT EXISTS upstream Map(String, UUID) DEFAULT map() AFTER log_path;

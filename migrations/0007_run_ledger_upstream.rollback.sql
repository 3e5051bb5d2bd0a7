-- Rollback of 0007_run_ledger_upstream.

ALTER TABLE run_ledger ON CLUSTER {cluster} DROP COLUMN IF EXISTS upstream;

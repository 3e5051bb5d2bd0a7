-- Rollback of 0001_run_ledger.

DROP TABLE IF EXISTS run_ledger ON CLUSTER {cluster} SYNC;

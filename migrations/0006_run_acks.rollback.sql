-- Rollback of 0006_run_acks.

DROP TABLE IF EXISTS run_acks ON CLUSTER {cluster} SYNC;

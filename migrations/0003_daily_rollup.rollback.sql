-- Rollback of 0003_daily_rollup.

DROP TABLE IF EXISTS daily_rollup ON CLUSTER {cluster} SYNC;

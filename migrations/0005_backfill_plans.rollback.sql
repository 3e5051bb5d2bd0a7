-- Rollback of 0005_backfill_plans.

DROP TABLE IF EXISTS backfill_plans ON CLUSTER {cluster} SYNC;

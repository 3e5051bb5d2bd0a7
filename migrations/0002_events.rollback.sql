-- Rollback of 0002_events.

DROP TABLE IF EXISTS events ON CLUSTER {cluster} SYNC;

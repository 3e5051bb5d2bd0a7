-- Rollback of 0004_user_sessions.

DROP TABLE IF EXISTS user_sessions ON CLUSTER {cluster} SYNC;

ALTER TABLE analytics.events ON CLUSTER {{.APP_CLUSTER}}
    ADD COLUMN IF NOT EXISTS `session_id` String CODEC(ZSTD(1)) AFTER `distinct_id`;

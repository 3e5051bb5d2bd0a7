ALTER TABLE analytics.events ON CLUSTER {{.APP_CLUSTER}}
    MODIFY TTL toDateTime(timestamp) + INTERVAL {{.EVENTS_TTL_DAYS}} DAY DELETE;

ALTER TABLE analytics.events ON CLUSTER {{.APP_CLUSTER}}
    MODIFY COMMENT 'raw events of {{.APP_ENV}}, kept {{.EVENTS_TTL_DAYS}} days';

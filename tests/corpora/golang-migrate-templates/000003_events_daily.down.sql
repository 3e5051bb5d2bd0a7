DROP VIEW IF EXISTS analytics.events_daily_mv ON CLUSTER {{ .APP_CLUSTER }};
DROP TABLE IF EXISTS analytics.events_daily ON CLUSTER {{ .APP_CLUSTER }};

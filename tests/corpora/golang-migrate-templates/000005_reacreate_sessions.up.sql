DROP TABLE IF EXISTS analytics.sessions ON CLUSTER {{.APP_CLUSTER}};

CREATE TABLE analytics.sessions ON CLUSTER {{.APP_CLUSTER}}
(
    `project_id` UInt32,
    `session_id` String,
    `started_at` DateTime64(3),
    `ended_at` DateTime64(3),
    `pageviews` UInt32,
    `version` UInt64
)
ENGINE = {{.APP_REPLICATED}}ReplacingMergeTree(version)
PARTITION BY toYYYYMM(started_at)
ORDER BY (project_id, session_id);

-- +goose Up
-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS session_stats
(
    day Date,
    sessions AggregateFunction(uniq, UUID),
    users AggregateFunction(uniq, UInt64),
    agents SimpleAggregateFunction(groupUniqArrayArray, Array(String))
)
ENGINE = AggregatingMergeTree
ORDER BY day;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS session_stats_mv TO session_stats AS
SELECT
    toDate(started_at) AS day,
    uniqState(session_id) AS sessions,
    uniqState(user_id) AS users,
    -- agents are split on ';' as the collector sends them; the semicolons above are in a string and a comment
    groupUniqArrayArray(splitByChar(';', user_agent)) AS agents
FROM sessions
WHERE sign = 1
GROUP BY day
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP VIEW IF EXISTS session_stats_mv;
DROP TABLE IF EXISTS session_stats;
-- +goose StatementEnd

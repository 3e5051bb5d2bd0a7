#! rollup of visits per site and day
CREATE TABLE IF NOT EXISTS visits_daily (day Date, site LowCardinality(String), visits UInt64)
ENGINE = SummingMergeTree ORDER BY (site, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS visits_daily_mv TO visits_daily AS
SELECT toDate(visited_at) AS day, site, count() AS visits FROM visits GROUP BY day, site;

-- +goose Up
ALTER TABLE page_views ADD COLUMN IF NOT EXISTS country LowCardinality(String) DEFAULT '' AFTER referrer;
ALTER TABLE page_views ADD INDEX IF NOT EXISTS idx_path path TYPE tokenbf_v1(4096, 3, 0) GRANULARITY 2;

-- +goose Down
ALTER TABLE page_views DROP INDEX IF EXISTS idx_path;
ALTER TABLE page_views DROP COLUMN IF EXISTS country;

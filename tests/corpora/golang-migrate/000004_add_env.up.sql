ALTER TABLE events ON CLUSTER {{.CLUSTER}} ADD COLUMN IF NOT EXISTS env LowCardinality(String) DEFAULT 'prod' AFTER country;
ALTER TABLE users ON CLUSTER {{.CLUSTER}} ADD COLUMN IF NOT EXISTS env LowCardinality(String) DEFAULT 'prod';

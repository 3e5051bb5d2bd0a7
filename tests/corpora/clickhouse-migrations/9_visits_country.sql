ALTER TABLE visits ADD COLUMN IF NOT EXISTS country LowCardinality(String) DEFAULT '';

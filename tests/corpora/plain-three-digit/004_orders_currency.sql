ALTER TABLE orders ADD COLUMN IF NOT EXISTS currency LowCardinality(String) DEFAULT 'EUR' AFTER amount;

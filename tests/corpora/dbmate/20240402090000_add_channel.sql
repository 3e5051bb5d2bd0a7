-- migrate:up
ALTER TABLE orders ADD COLUMN IF NOT EXISTS channel LowCardinality(String) DEFAULT 'web' AFTER status;
ALTER TABLE order_items ADD COLUMN IF NOT EXISTS channel LowCardinality(String) DEFAULT 'web';

-- migrate:down
ALTER TABLE orders DROP COLUMN IF EXISTS channel;
ALTER TABLE order_items DROP COLUMN IF EXISTS channel;

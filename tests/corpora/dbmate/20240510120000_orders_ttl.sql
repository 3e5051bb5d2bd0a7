-- migrate:up
ALTER TABLE orders MODIFY TTL toDateTime(created_at) + INTERVAL 2 YEAR;

-- migrate:down
ALTER TABLE orders REMOVE TTL;

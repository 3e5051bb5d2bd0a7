-- +goose Up
ALTER TABLE page_views MODIFY TTL ts + INTERVAL 180 DAY;

-- +goose Down
ALTER TABLE page_views MODIFY TTL ts + INTERVAL 90 DAY;

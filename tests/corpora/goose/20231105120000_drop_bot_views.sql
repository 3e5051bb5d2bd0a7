-- Data cleanup: rows from the crawler that ignored robots.txt. There is nothing to undo.
-- +goose Up
-- +goose NO TRANSACTION
ALTER TABLE page_views DELETE WHERE site_id = 0 OR path LIKE '/wp-admin%';

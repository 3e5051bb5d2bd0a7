-- +goose Up
-- +goose NO TRANSACTION
-- +goose StatementBegin
INSERT INTO sessions (session_id, user_id, started_at, user_agent, sign) VALUES
    ('00000000-0000-0000-0000-000000000001', 1, '2024-01-01 00:00:00', 'curl/8.0;probe', 1);
-- +goose StatementEnd

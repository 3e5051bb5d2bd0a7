-- +goose Up
CREATE TABLE IF NOT EXISTS sites
(
    site_id UInt32,
    domain String,
    owner_email String,
    created_at DateTime DEFAULT now(),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY site_id;

INSERT INTO sites (site_id, domain, owner_email, version) VALUES
    (1, 'example.com', 'ops@example.com', 1),
    (2, 'example.org', 'web@example.org', 1);

-- +goose Down
DROP TABLE IF EXISTS sites;

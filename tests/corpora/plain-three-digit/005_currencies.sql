CREATE TABLE IF NOT EXISTS currencies (code String, name String) ENGINE = ReplacingMergeTree ORDER BY code;
INSERT INTO currencies VALUES ('EUR', 'Euro'), ('USD', 'US dollar'), ('CHF', 'Swiss franc');

"""Schema migrations: the files, the journal that decides applied / dirty / drifted / ahead, the migrator, the yoyo
backend, statement splitting and templating, importers of other tools' layouts. Imports ``clickhouse`` and ``core``."""

"""The ClickHouse layer: the only place a client is made (``client``), and the database's own life cycle
(``admin``: setup, drop, info, query). Imports only ``ops.core``."""

"""chops' processes at run time: pid files (list, stop: ``pidfiles``), the janitor (what dead processes leave:
``janitor``), the run logs (``logs``), and the health verdict (``health``). Imports ``migrations``, ``pipelines``,
``clickhouse`` and ``core``."""

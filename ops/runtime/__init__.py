"""chops' processes at run time: pid files (list, stop), the janitor (what dead processes leave), logs, and the
health verdict. Imports ``migrations``, ``pipelines``, ``clickhouse`` and ``core``."""

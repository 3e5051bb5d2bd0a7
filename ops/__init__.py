"""chops: operations for a ClickHouse-backed data-processing system.

The library. It never imports invoke; the task layer in ``ops.cli`` does.
"""

from pathlib import Path

#: The project root: the directory holding tasks.py, config/ and ops/.
ROOT = Path(__file__).resolve().parent.parent

"""A migration file that is not UTF-8 is one line naming the file and the offset of the first bad byte (issue 14,
finding 7), not a traceback."""

import pytest

from ops.core.errors import BadInput
from ops.migrations.files import read_files


@pytest.mark.parametrize("name", ["0001_first.sql", "0001_first.rollback.sql"])
def test_a_migration_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path, name):
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE a (x UInt8) ENGINE = Memory;\n")
    (tmp_path / "0001_first.rollback.sql").write_text("DROP TABLE a;\n")
    (tmp_path / name).write_bytes(b"-- caf\xe9\nDROP TABLE IF EXISTS a;\n")
    with pytest.raises(BadInput) as err:
        read_files(tmp_path, tmp_path)
    assert err.value.line() == f"{name}: not UTF-8: byte 0xe9 at offset 6 (line 1) (save the file as UTF-8)"
    assert err.value.exit_code == 2

import hashlib

import pytest

from bmbench.core.hashing import file_sha256


def test_digest_of_a_file_larger_than_one_block(tmp_path):
    data = bytes(range(256)) * 5000  # 1.22 MiB: two blocks
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(str(tmp_path / "empty")) == hashlib.sha256(b"").hexdigest()
    with pytest.raises(OSError):
        file_sha256(tmp_path / "missing")

"""One process per data dir: a second member on the same directory is refused before it opens
anything there (two members on one log could vote twice in one term)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ckite import CKiteBuilder
from ckite.log.data_dir import LOCK_FILE, DataDir, DataDirInUseError
from tests import processes
from tests.kv_example import KVStore
from tests.netutil import free_port

ROOT = Path(__file__).resolve().parent.parent
process_clusters = processes.process_clusters


def test_a_second_holder_of_a_data_dir_is_refused_naming_the_directory_and_the_holders_pid(tmp_path):
    held = DataDir(tmp_path / "member1")
    with pytest.raises(DataDirInUseError, match=rf"{tmp_path / 'member1'} is in use by another process "
                                                rf"\(pid {os.getpid()}\)"):
        DataDir(tmp_path / "member1")
    held.close()
    DataDir(tmp_path / "member1").close()   # free again once released


def test_a_member_refused_its_data_dir_leaves_the_holders_database_alone(tmp_path):
    def member(port: int):
        return (CKiteBuilder().with_local_binding(f"127.0.0.1:{port}").with_data_dir(tmp_path)
                .with_state_machine(KVStore()).without_admin().build())
    first = member(free_port())
    try:
        with pytest.raises(DataDirInUseError):
            member(free_port())
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    finally:
        first.stop()
    member(free_port()).stop()   # stop() released it


@pytest.mark.processes
def test_a_second_kvstore_process_on_a_data_dir_exits_with_status_2_and_one_line(process_clusters):
    cluster = process_clusters(1).start_all()
    holder = cluster[0]
    done = subprocess.run([sys.executable, "-m", "kvstore", "--port", str(free_port()), "--data-dir",
                           str(holder.data_dir)], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines == [f"ckite-kvstore: error: data directory {holder.data_dir} is in use by another process "
                     f"(pid {holder.pid})"], done.stderr
    assert holder.client().status().status == 200   # the holder serves on

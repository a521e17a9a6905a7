"""lightningstor.backup on files made here (the end-to-end run against a
real server is tests/integration/test_backup.py)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from lightningstor import backup
from lightningstor.backup import BackupFailed, BackupRefused, Sources, take_backup


def _source(tmp_path: Path) -> Sources:
    """A database with the SQLite store's table and no records, and two
    chunk files nothing lists."""
    tmp_path.mkdir()
    database = tmp_path / "metadata.db"
    conn = sqlite3.connect(database)
    conn.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL, mod_revision INTEGER NOT NULL)")
    conn.commit()
    conn.close()
    chunks = tmp_path / "data" / "chunks" / "ab"
    for name in ("ab01", "ab02"):
        (chunks / name[2:]).mkdir(parents=True)
        (chunks / name[2:] / name).write_bytes(b"x" * 10)
    (chunks / "not-a-chunk.txt").write_text("ignored")
    (chunks / "ab03").write_text("a chunk id, not where the backend puts it: ignored")
    return Sources(str(database), str(tmp_path / "data" / "chunks"), str(tmp_path / "master.key"))


def test_chunks_nothing_lists_are_left_out(tmp_path: Path) -> None:
    report = take_backup(_source(tmp_path / "src"), str(tmp_path / "dest"))
    assert (report.copied_ahead, report.left_out, report.chunks, report.bytes) == (2, 2, 0, 0)
    assert (report.master_key, report.records) == (False, 0)
    files = sorted(p.relative_to(tmp_path / "dest").as_posix() for p in (tmp_path / "dest").rglob("*") if p.is_file())
    assert files == ["BACKUP.json", "metadata.db"]


@pytest.mark.parametrize("existing", [False, True])
def test_an_interrupted_backup_removes_what_it_wrote(tmp_path: Path, existing: bool) -> None:
    """Interrupted between two files: BackupFailed, and the destination is
    gone (created by the backup) or empty again (given empty)."""
    dest = tmp_path / "dest"
    if existing:
        dest.mkdir()
    asked = []

    def stopping() -> bool:
        asked.append(1)
        return len(asked) > 1  # after the first chunk file

    with pytest.raises(BackupFailed, match="interrupted"):
        take_backup(_source(tmp_path / "src"), str(dest), stopping=stopping)
    assert (dest.is_dir() and list(dest.iterdir()) == []) if existing else not dest.exists()


def test_a_destination_in_use_is_refused_untouched(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine").write_text("keep")
    with pytest.raises(BackupFailed, match="is not empty"):
        take_backup(_source(tmp_path / "src"), str(dest))
    assert [p.name for p in dest.iterdir()] == ["mine"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(BackupFailed, match="not a directory"):
        take_backup(_source(tmp_path / "src2"), str(tmp_path / "file"))


def test_a_destination_inside_the_chunks_directory_is_refused(tmp_path: Path) -> None:
    """It would copy its own copies; nothing is created."""
    sources = _source(tmp_path / "src")
    inside = Path(sources.chunks) / "ab" / "backup"
    with pytest.raises(BackupFailed, match="inside the chunks directory"):
        take_backup(sources, str(inside))
    assert not inside.exists()


def test_an_interrupt_after_the_copies_still_keeps_no_backup(tmp_path: Path) -> None:
    """A stop asked for while the backup flushes (the slow last step, when
    an operator presses Ctrl-C): BackupFailed and nothing kept; there was
    a complete backup on disk, then an exit saying "interrupted"."""
    dest = tmp_path / "dest"
    lines: list[str] = []
    with pytest.raises(BackupFailed, match="interrupted"):
        take_backup(
            _source(tmp_path / "src"), str(dest), log=lines.append,
            stopping=lambda: any(line.startswith("flushing") for line in lines),
        )  # fmt: skip
    assert lines[-1].startswith("flushing") and not dest.exists()


def test_a_destination_whose_parent_is_missing_is_refused(tmp_path: Path) -> None:
    """Only the destination itself is created: an interrupted backup would
    otherwise leave the parents it made.  A dangling symlink is refused too."""
    with pytest.raises(BackupRefused, match="does not exist"):
        take_backup(_source(tmp_path / "src"), str(tmp_path / "a" / "b" / "dest"))
    assert not (tmp_path / "a").exists()
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(BackupRefused):
        take_backup(_source(tmp_path / "src2"), str(tmp_path / "link"))
    assert not (tmp_path / "nowhere").exists()


def test_every_directory_and_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        take_backup(_source(tmp_path / "src"), str(tmp_path / "dest"))
    finally:
        os.umask(old)
    for path in [tmp_path / "dest", *(tmp_path / "dest").rglob("*")]:
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path


def _list_chunks(database: str, *chunk_ids: str) -> None:
    """An object record of the snapshot-to-be listing ``chunk_ids``."""
    from lightningstor.core import keys

    conn = sqlite3.connect(database)
    value = json.dumps({"chunks": [[c, 0, 10, 0] for c in chunk_ids]}, separators=(",", ":")).encode()
    conn.execute("INSERT INTO kv VALUES (?, ?, 1)", (keys.OBJECTS + b"b/k", value))
    conn.commit()
    conn.close()


def test_chunks_written_during_the_copy_are_copied_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks that appear after the first copy and that the snapshot lists
    are copied after it, a batch of files open at a time (one here)."""
    monkeypatch.setattr(backup, "OPEN_AT_ONCE", 1)
    sources = _source(tmp_path / "src")
    late = ["cd01", "cd02", "cd03"]
    _list_chunks(sources.database, "ab01", *late)

    def log(line: str) -> None:
        if line.startswith("copying the metadata database"):  # after the first copy
            for name in late:
                (Path(sources.chunks) / "cd" / name[2:]).mkdir(parents=True, exist_ok=True)
                (Path(sources.chunks) / "cd" / name[2:] / name).write_bytes(b"y" * 10)

    report = take_backup(sources, str(tmp_path / "dest"), log=log)
    assert (report.copied_ahead, report.copied_after, report.left_out, report.chunks) == (2, 3, 1, 4)
    copied = {p.name for p in (tmp_path / "dest" / "data" / "chunks").rglob("*") if p.is_file()}
    assert copied == {"ab01", *late}


def test_a_chunk_the_snapshot_lists_that_never_comes_fails_after_every_attempt(tmp_path: Path) -> None:
    sources = _source(tmp_path / "src")
    _list_chunks(sources.database, "ab01", "ef09")
    lines: list[str] = []
    with pytest.raises(BackupFailed, match=f"ef09.* in {backup.SNAPSHOT_ATTEMPTS} snapshots in a row"):
        take_backup(sources, str(tmp_path / "dest"), log=lines.append)
    assert sum("taking it again" in line for line in lines) == backup.SNAPSHOT_ATTEMPTS
    assert not (tmp_path / "dest").exists()

"""A segment writer whose write the file system refuses part-way (a full disk, a file-size
limit) cuts the torn chunk off again: the file ends at a whole chunk, and a later chunk
that fits follows it directly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from willowisp.wtrace.reader import read_file

# In a child process: a real file-size limit (RLIMIT_FSIZE; SIGXFSZ ignored, so a write
# past it fails with EFBIG, part-written), then chunks of ~30 KB until one is refused and
# one small chunk after it.
CHILD = textwrap.dedent(
    """
    import os, resource, signal, sys
    from willowisp.wtrace.payload import EventBatch, Record
    from willowisp.wtrace.framing import CODEC_NONE
    from willowisp.wtrace.writer import SegmentWriter

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    w = SegmentWriter(sys.argv[1], CODEC_NONE)
    written, refused = 0, 0
    for i in range(10):
        batch = EventBatch(first_seq=i * 1000)
        for j in range(1000):
            batch.append(1, 1, j, 0, i * 1_000_003 + j * 7919, 0)
        try:
            w.write_chunk([Record(2, i, (("name", "x" * 1000),))], batch)
            written += 1
        except OSError:
            refused += 1
            size_after = w.size
            break
    w.write_chunk([Record(2, 99, (("name", "after"),))])
    print(written, refused, size_after, w.size, os.path.getsize(sys.argv[1]))
    """
)


def test_a_refused_write_leaves_whole_chunks(tmp_path: Path) -> None:
    path = tmp_path / "seg.wtrace"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written, refused, size_after, size, on_disk = map(int, done.stdout.split())
    assert refused == 1 and 1 <= written < 10
    assert size == on_disk and size_after < size  # the small chunk follows the last whole one
    tf = read_file(str(path))
    assert not tf.problems and not tf.truncated, (tf.problems, tf.truncated)
    assert len(tf.chunks) == written + 1
    names = [dict(r.attrs).get("name") for c in tf.chunks for r in c.records]
    assert names[-1] == "after" and names.count("x" * 1000) == written

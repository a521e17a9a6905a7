"""Crash consistency, long mode: the CI harness for as many minutes as you like.

Runs ``tests/crash_workload.py`` (a seeded mixed S3 workload from several
client threads against the real ``twistd lightningstor``, SIGKILLed at random
moments and restarted; every acknowledged write checked after every restart),
then stops the server, runs ``lightningstor-admin collect --grace-seconds 0
--unsafe-short-grace`` and ``scrub`` and proves the chunk files on disk are
exactly those that live objects, versions and parts reference.  Exit status
0 when every check held.

Run from the repository root::

    .venv/bin/python bench/crash.py --minutes 10 [--seed 7] [--workers 4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.crash_workload import CrashCheckFailed, CrashRun, kill_and_cleanup  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-run", type=float, default=2.0, help="longest stretch between kills (s)")
    parser.add_argument("--keep", type=Path, default=None, help="use (and keep) this directory")
    args = parser.parse_args(argv)
    holder = None
    if args.keep is None:
        holder = tempfile.TemporaryDirectory(prefix="ls-crash-")
        base = Path(holder.name)
    else:
        base = args.keep
        base.mkdir(parents=True, exist_ok=True)
    data = base / "data"
    data.mkdir(exist_ok=True)
    began = time.monotonic()
    run = CrashRun(data, seed=args.seed, workers=args.workers, max_run=args.max_run,
                   log=lambda line: print(f"[{time.monotonic() - began:7.1f}s] {line}", flush=True))
    print(f"seed {args.seed}, {args.workers} workers, {args.minutes} min, data in {data}", flush=True)
    try:
        run.run_for(args.minutes * 60)
        stats = run.final_check()
    except CrashCheckFailed as exc:
        print(f"FAILED (seed {args.seed}): {exc}", file=sys.stderr)
        if holder is not None:
            print("rerun with --keep DIR to inspect the data dir", file=sys.stderr)
        return 1
    finally:
        kill_and_cleanup(run)
        if holder is not None:
            holder.cleanup()
    elapsed = time.monotonic() - began
    print(f"OK after {elapsed:.0f} s: {stats.kills} SIGKILLs, {stats.acknowledged} acknowledged writes "
          f"({', '.join(f'{k} {v}' for k, v in sorted(stats.ops.items()))})")
    print(f"in flight at a kill: {stats.ambiguous} (applied whole: {stats.ambiguous_applied}, "
          f"absent: {stats.ambiguous - stats.ambiguous_applied}); torn: 0")
    print(f"collector: {stats.orphans_collected} orphaned chunks, {stats.tmp_removed} temporary files; "
          f"left: {stats.chunk_files} chunk files, {stats.chunk_bytes} bytes on disk for "
          f"{stats.live_chunk_bytes} live bytes (block CRC footers)")
    print(f"restart time {stats.restart_seconds / max(stats.rounds + 2, 1):.2f} s/start, "
          f"verification {stats.verify_seconds:.1f} s total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

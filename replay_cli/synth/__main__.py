"""Command line: ``python -m replay_cli.synth samples|corpus ...``.

python -m replay_cli.synth samples [OUTDIR]          # the committed samples/
python -m replay_cli.synth corpus OUTDIR --count N --seed S [--workers W]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from replay_cli.synth.catalogue import write_corpus, write_samples

DEFAULT_SAMPLES_DIR = Path("samples")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, write the files, report how many were written."""
    parser = argparse.ArgumentParser(prog="python -m replay_cli.synth")
    commands = parser.add_subparsers(dest="command", required=True)
    samples = commands.add_parser("samples", help="write the committed sample set")
    samples.add_argument("outdir", nargs="?", type=Path, default=DEFAULT_SAMPLES_DIR)
    corpus = commands.add_parser("corpus", help="write N synthetic replays")
    corpus.add_argument("outdir", type=Path)
    corpus.add_argument("--count", type=int, required=True)
    corpus.add_argument("--seed", type=int, default=0)
    corpus.add_argument("--workers", type=int, default=None)
    corpus.add_argument("--compression", choices=("zlib", "bzip2"), default="zlib")
    args = parser.parse_args(argv)
    if args.command == "samples":
        paths = write_samples(args.outdir)
    else:
        paths = write_corpus(
            args.outdir,
            args.count,
            args.seed,
            workers=args.workers,
            compression=args.compression,
        )
    sys.stdout.write(f"wrote {len(paths)} files to {args.outdir}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

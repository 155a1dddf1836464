"""Command line: `python -m xautodl.bench query '<arch>'` and `python -m xautodl.bench download`."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from ..runtime.cli import main_guard
from ..runtime.flags import EntryParser
from ..bench.download import ARCHIVES, download_benchmark
from ..bench.nats import NatsBenchmark, find_benchmark, missing_benchmark_message


def _parser() -> argparse.ArgumentParser:
    parser = EntryParser(prog="python -m xautodl.bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    query = commands.add_parser("query", help="print the benchmark's results for one arch")
    query.add_argument("arch", help="arch string such as '|nor_conv_3x3~0|+|...|' or a known name such as resnet")
    query.add_argument("--hp", default="200", help="training epochs of the results: 200 (default) or 12")
    query.add_argument("--path", default=None, help="benchmark folder or file (default: found under $TORCH_HOME)")
    download = commands.add_parser("download", help="fetch a benchmark archive with gdown and unpack it")
    download.add_argument("--space", default="tss", choices=sorted(ARCHIVES), help="tss: topology (default); sss: size")
    download.add_argument("--torch_home", default=None, help="destination folder (default: $TORCH_HOME, else ~/.torch)")
    download.add_argument("--sha256", default=None,
                          help="SHA-256 the archive must have (NATS-Bench publishes none; pass one you trust)")
    return parser


def _query(arch: str, hp: str, path: str | None) -> None:
    found = Path(path) if path else find_benchmark()
    if found is None or not found.exists():
        raise DataError(missing_benchmark_message(path))
    print(NatsBenchmark(found).query(arch, hp=hp).format_table())


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command named in `argv` (default: sys.argv)."""
    args = _parser().parse_args(argv)
    if args.command == "query":
        _query(args.arch, args.hp, args.path)
    else:
        download_benchmark(args.space, args.torch_home, args.sha256)


if __name__ == "__main__":
    main_guard(main)

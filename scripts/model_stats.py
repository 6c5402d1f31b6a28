"""Our parameter counts, FLOPs and inference memory beside a paper table's, row by row.

    python scripts/model_stats.py --table rkcnn_table2          # also rkcnn_table3, rkcnn_table5, horesnet_table3
    python scripts/model_stats.py --table rkcnn_table3 --json   # rows: params, paper_params, flops, paper_flops, ...
"""

from __future__ import annotations

import argparse
import json
import sys

from odenets.errors import ConfigError
from odenets.reporting.model_stats import format_table, table_stats
from odenets.reporting.published import table_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help=f"published table: {', '.join(table_names())}")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a text table")
    parser.add_argument("--device", default="cpu", help="where to measure memory and value-dependent FLOPs")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the memory measurement")
    args = parser.parse_args(argv)
    try:
        stats = table_stats(args.table, memory=args.memory, device=args.device)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(stats, indent=1) if args.json else format_table(args.table, stats, args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())

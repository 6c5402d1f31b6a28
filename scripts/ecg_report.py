"""Per-record MIT-BIH beat report: beats kept per AAMI class versus annotation counts, skipped symbols.

    python scripts/ecg_report.py dataset.records_dir=../shared/data/mitdb

Arguments are `train.py` overrides of the `mitbih` dataset config (records, lead, rr_factor, ...);
the beats are built (or read from the cache) exactly as training builds them.
"""

from __future__ import annotations

import sys

from odenets.config import compose
from odenets.data import build_datamodule
from odenets.errors import ConfigError


def main(overrides: list[str]) -> int:
    try:
        datamodule = build_datamodule(compose(["dataset=mitbih", *overrides]).dataset)
        datamodule.prepare_data()
        print(datamodule.report())
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

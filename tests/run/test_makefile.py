"""The Makefile: every declared target defined exactly once, so `make <target>` runs what its help says."""

import re
from pathlib import Path

MAKEFILE = (Path(__file__).resolve().parents[2] / "Makefile").read_text()


def test_every_phony_target_is_defined_once():
    phony = re.search(r"^\.PHONY:(.*)$", MAKEFILE, re.M).group(1).split()
    defined = re.findall(r"^([\w-]+):", MAKEFILE, re.M)
    assert sorted(phony) == sorted(set(defined) - {"PHONY"})
    assert len(defined) == len(set(defined)), [t for t in set(defined) if defined.count(t) > 1]

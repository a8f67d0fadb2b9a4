"""`make bench` (quick) or `make bench SIZE=large`: run the benchmarks and print their numbers."""

from __future__ import annotations

import json
import logging
import os
import platform
import sys

from bench import e2e_latency

SIZES = {"quick": [(100, 20.0)], "large": [(600, 20.0), (1000, 100.0)]}


def main(argv: list[str]) -> int:
    size = argv[0] if argv else "quick"
    if size not in SIZES:
        print(f"usage: python -m bench [{'|'.join(SIZES)}]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for count, rate in SIZES[size]:
        result = e2e_latency.run(count, rate)
        print(
            "e2e m365->crm",
            json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Sums test cases over meson's test logs: doctest's own case counts for doctest executables,
one case per test for everything else. Prints "N passed, N failed"; exits 1 on any failure."""
import json
import re
import sys

DOCTEST = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")

passed = failed = 0
for build in sys.argv[1:]:
    try:
        lines = open(f"{build}/meson-logs/testlog.json").read().splitlines()
    except OSError:
        print(f"{build}: no test log (build failed?)")
        failed += 1
        continue
    for line in lines:
        if not line.strip():
            continue
        entry = json.loads(line)
        ok = entry.get("result") in ("OK", "EXPECTEDFAIL", "SKIP")
        counts = DOCTEST.findall(entry.get("stdout", "") or "")
        if counts:
            total, good, bad = map(int, counts[-1])
            passed += good
            failed += bad
            if not ok and bad == 0:  # crashed or timed out after doctest's summary
                failed += 1
        elif ok:
            passed += 1
        else:
            failed += 1
            print(f"{build}: {entry.get('name')}: {entry.get('result')}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)

#!/usr/bin/env python3
"""Prints why the failed tests of a meson build failed: for each test in
meson-logs/testlog.txt whose result is not a pass or a skip, its name, result, the doctest
assertion lines and the tail of its output. Bounded, so that a CI log stays readable.
Usage: failure_details.py BUILD_DIR"""
import re
import sys

PASS = re.compile(r"^result:\s+(exit status 0|skipped|exit status 77)\s*$")
WANT = re.compile(r"ERROR:|FATAL|TEST CASE:|CHECK|REQUIRE|runtime error:|Sanitizer|"
                  r"terminate called|Assertion|MESSAGE:|values:|  [^ ].*==")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1] + "/meson-logs/testlog.txt"
    try:
        text = open(path, errors="replace").read()
    except OSError as error:
        print(f"failure_details: {path}: {error.strerror}", file=sys.stderr)
        return 1
    sections = re.split(r"^=+ \d+/\d+ =+$", text, flags=re.M)[1:]
    for section in sections:
        lines = section.splitlines()
        result = next((l for l in lines if l.startswith("result:")), "")
        if not result or PASS.match(result):
            continue
        name = next((l for l in lines if l.startswith("test:")), "test: ?")
        print(f"-- {name.split(':', 1)[1].strip()}: {result.split(':', 1)[1].strip()}")
        body = [l[:300] for l in lines if not l.startswith(("command:", "start time:"))]
        picked = [l for l in body if WANT.search(l) and "MESSAGE: skipped" not in l][:60]
        for line in picked:
            print("   " + line)
        print("   ... last lines:")
        for line in body[-25:]:
            print("   " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

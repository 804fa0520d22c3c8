#!/usr/bin/env bash
# The main job: sets up, builds (release) and runs the model comparison benchmark
# (epoll, reuseport, thread, fork and the textbook epoll, thread and fork echo servers, plus any
# further reactor-server models; median of 3 rounds). `--suite scale` runs the idle-connection
# scaling curves alone.
# Extra arguments go to reactor-bench (e.g. --quick, --models epoll,thread, --out DIR).
# --suite http runs tools/reactor-bench-http instead: reactor http vs nginx (docs/http.md).
# --suite resp runs tools/resp-bench.sh instead: reactor resp vs redis-server (redis-benchmark).
# Safe to rerun. Results land in results/<UTC timestamp>/ (JSON, CSV, SVG chart).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in meson ninja g++ pkg-config gnuplot taskset redis-server redis-benchmark wrk curl; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
[ -x /usr/sbin/nginx ] || need+=(nginx)
[ -f /usr/include/doctest/doctest.h ] || need+=(doctest)
pkg-config --exists benchmark 2>/dev/null || need+=(benchmark)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing (missing: ${need[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq meson ninja-build g++ pkg-config libbenchmark-dev doctest-dev \
    gnuplot-nox util-linux redis-server redis-tools nginx-light wrk curl >/dev/null
fi

if [ ! -f build-release/build.ninja ]; then
  meson setup build-release -Dbuildtype=release -Dtests=false >/dev/null
fi
ninja -C build-release >/dev/null
# The http suite (reactor http vs nginx: wrk req/s, curl GB/s) has its own small driver.
if [ "${1:-}" = "--suite" ] && [ "${2:-}" = "http" ]; then
  exec build-release/tools/reactor-bench-http "${@:3}"
fi
# The resp suite (redis-benchmark vs redis-server) has its own small driver.
if [ "${1:-}" = "--suite" ] && [ "${2:-}" = "resp" ]; then
  exec bash tools/resp-bench.sh --server build-release/tools/reactor-server "${@:3}"
fi
exec build-release/tools/reactor-bench "$@"

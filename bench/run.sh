#!/usr/bin/env bash
# The main job: sets up, builds (release) and runs the model comparison benchmark
# (epoll, reuseport, thread, fork and the textbook epoll, thread and fork echo servers, plus any
# further reactor-server models; median of 3 rounds). `--suite scale` runs the idle-connection
# scaling curves alone.
# Extra arguments go to reactor-bench (e.g. --quick, --models epoll,thread, --out DIR).
# --suite http runs tools/bench/reactor-bench-http instead: reactor http vs nginx (docs/http.md).
# --suite resp runs tools/bench/resp-bench.sh instead: reactor resp vs redis-server (redis-benchmark).
# Without --suite it runs the comparison, then the http and resp suites, into one folder.
# Safe to rerun. Results land in results/<UTC timestamp>/ (JSON, CSV, SVG chart, index.html).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  cat <<'USAGE'
usage: bash bench/run.sh [--suite compare|scale|http|resp] [reactor-bench options]
Sets up (apt-get on Debian 12), builds build-release/ and runs the main job: the model
comparison (reactor-bench), then resp vs redis-server and http vs nginx, into one
results/<UTC timestamp>/ folder with index.html. --suite NAME runs one suite alone.
Other options go to reactor-bench (--quick, --models LIST, --rounds N, --out DIR, ...):
USAGE
  if [ -x build-release/tools/reactor-bench ]; then
    build-release/tools/reactor-bench --help | tail -n +4
  else
    echo "(build once to list them: bash bench/run.sh --quick, or see tools/bench/reactor-bench.cpp)"
  fi
  exit 0
fi

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
  exec bash tools/bench/resp-bench.sh --server build-release/tools/reactor-server "${@:3}"
fi
# The main job: the model comparison, then the suites next to the servers users would pick
# instead (http vs nginx, resp vs redis-server), all into one results folder.
out=""
quick=()
args=("$@")
for ((i = 0; i < ${#args[@]}; ++i)); do
  case "${args[$i]}" in
    --out) out="${args[$((i + 1))]:-}" ;;
    --out=*) out="${args[$i]#--out=}" ;;
    --quick) quick=(--quick) ;;
    --suite) exec build-release/tools/reactor-bench "$@" ;;  # --suite scale: that suite alone
  esac
done
if [ -z "$out" ]; then
  out="results/$(date -u +%Y%m%dT%H%M%SZ)"
  args+=(--out "$out")
fi
build-release/tools/reactor-bench "${args[@]}"
echo "== resp suite: reactor resp vs redis-server"
bash tools/bench/resp-bench.sh --server build-release/tools/reactor-server --out "$out/resp" "${quick[@]}"
echo "== http suite: reactor http vs nginx (writes index.html over every suite's results)"
build-release/tools/reactor-bench-http --out "$out" "${quick[@]}"
echo "results: $out (index.html: reactor-server --protocol http --args root=$out)"

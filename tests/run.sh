#!/usr/bin/env bash
# Sets up, builds and runs every test: the normal build, then the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer, then the threaded tests under ThreadSanitizer.
# Safe to rerun. Ends with one line "N passed, N failed" (test cases, all builds) and exits
# non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in meson ninja g++ pkg-config python3; do command -v "$tool" >/dev/null || need+=("$tool"); done
[ -f /usr/include/doctest/doctest.h ] || need+=(doctest)
pkg-config --exists benchmark 2>/dev/null || need+=(benchmark)
command -v clang++ >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || need+=(libfuzzer)
# The real peer programs the integration tests drive (never mocks).
for tool in redis-server redis-cli redis-benchmark nginx wrk ab curl haproxy chromium strace; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || need+=("$tool")
done
/usr/bin/python3 -c 'import redis' 2>/dev/null || need+=(python3-redis)
[ -f /usr/include/hiredis/hiredis.h ] || need+=(libhiredis-dev)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing build dependencies (missing: ${need[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq meson ninja-build g++ pkg-config python3 \
    libbenchmark-dev doctest-dev clang libclang-rt-14-dev iproute2 strace curl \
    redis-server redis-tools python3-redis nginx-light wrk apache2-utils haproxy libhiredis-dev \
    chromium fonts-dejavu-core zlib1g-dev >/dev/null || { echo "apt-get failed"; echo "0 passed, 1 failed"; exit 1; }
fi

jobs=$(nproc 2>/dev/null || echo 2)
# name:meson options. build-fuzz is configured with clang (libFuzzer) and runs only the fuzzers,
# each for FUZZ_SECONDS (default 20).
builds=("build:" "build-asan:-Db_sanitize=address,undefined -Db_lundef=false")
[ "${REACTOR_SKIP_TSAN:-0}" = 1 ] || builds+=("build-tsan:-Db_sanitize=thread -Db_lundef=false")
[ "${REACTOR_SKIP_FUZZ:-0}" = 1 ] || builds+=("build-fuzz:-Dfuzz=true -Dtests=false -Dbench=false -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz_seconds=${FUZZ_SECONDS:-20}")
failed_build=0
for entry in "${builds[@]}"; do
  dir=${entry%%:*}
  opts=${entry#*:}
  echo "== $dir ($opts)"
  if [ ! -f "$dir/build.ninja" ]; then
    compiler=
    [ "$dir" = build-fuzz ] && compiler=clang++
    # shellcheck disable=SC2086
    CXX=${compiler:-${CXX:-c++}} meson setup "$dir" $opts -Dbuildtype=debugoptimized >/dev/null \
      || { failed_build=1; continue; }
  fi
  ninja -C "$dir" -j "$jobs" >/dev/null || { echo "build failed: $dir"; ninja -C "$dir" -j1 2>&1 | tail -30; failed_build=1; continue; }
  suites=()
  # TSan covers the threaded code: post(), the thread and reuseport models.
  [ "$dir" = build-tsan ] && suites=(--suite threaded)
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    meson test -C "$dir" --print-errorlogs --no-rebuild --num-processes 2 "${suites[@]}" \
    > "$dir/test-output.txt" 2>&1
  tail -n 12 "$dir/test-output.txt"
  # A red run must say why: the failing tests' assertions and the tail of their output.
  grep -qE '^(Fail|Timeout): +[1-9]' "$dir/test-output.txt" && python3 tests/failure_details.py "$dir"
done

python3 tests/count_cases.py "${builds[@]%%:*}"
status=$?
[ $failed_build -eq 0 ] || { echo "a build failed"; exit 1; }
exit $status

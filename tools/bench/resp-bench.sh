#!/usr/bin/env bash
# The resp suite: redis-benchmark against reactor-server --protocol resp and against
# redis-server, same machine, same client. Server pinned to CPU 1, redis-benchmark to CPU 0;
# rounds alternate A B A B (reactor, redis) and the table shows each median and the ratio
# reactor/redis. Writes runs.csv (every run), results.csv (medians, ratio) and table.txt.
# Usage: tools/bench/resp-bench.sh --server PATH [--out DIR] [--rounds N] [--requests N]
#        [--clients N] [--pipelines "1 16"] [--tests ping,set,get] [--model epoll]
set -euo pipefail

server="" out="" rounds=3 requests=200000 clients=50 pipelines="1 16" tests="ping,set,get"
model=epoll
while [ $# -gt 0 ]; do
  case "$1" in
    --server) server="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --requests) requests="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --pipelines) pipelines="$2"; shift 2 ;;
    --tests) tests="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --quick) rounds=1; requests=20000; shift ;;
    --suite) shift 2 ;;  # bench/run.sh passes "--suite resp" through
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "resp-bench: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -x "$server" ] || { echo "resp-bench: --server PATH to reactor-server is required" >&2; exit 2; }
for tool in redis-server redis-benchmark taskset; do
  command -v "$tool" >/dev/null || { echo "resp-bench: $tool is missing" >&2; exit 2; }
done
[ -n "$out" ] || out="results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
work=$(mktemp -d)
pid=""
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cpus=$(nproc)
server_cpu=1 client_cpu=0
[ "$cpus" -ge 2 ] || server_cpu=0

# Starts one target; sets pid and port.
start() {
  local target=$1
  if [ "$target" = reactor ]; then
    taskset -c "$server_cpu" "$server" --protocol resp --model "$model" \
      --listen tcp://127.0.0.1:0 >"$work/server.out" 2>&1 &
    pid=$!
    for _ in $(seq 300); do
      port=$(sed -n 's/^listening on tcp:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/server.out")
      [ -n "$port" ] && break
      sleep 0.1
    done
  else
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    taskset -c "$server_cpu" redis-server --port "$port" --bind 127.0.0.1 --save '' \
      --appendonly no --daemonize no --logfile "$work/redis.log" &
    pid=$!
  fi
  for _ in $(seq 300); do
    redis-cli -h 127.0.0.1 -p "${port:-0}" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "resp-bench: $target did not start within 30 s: $(cat "$work"/*.out "$work"/*.log 2>/dev/null | tail -n 3)" >&2
  exit 1
}

stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}

echo "round,target,pipeline,test,rps" >"$out/runs.csv"
for round in $(seq "$rounds"); do
  for target in reactor redis; do
    start "$target"
    for p in $pipelines; do
      taskset -c "$client_cpu" redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" \
        -n "$requests" -t "$tests" -P "$p" -q --csv 2>/dev/null |
        awk -F'","' -v r="$round" -v t="$target" -v p="$p" \
          'NR > 1 { gsub(/"/, "", $1); gsub(/"/, "", $2); print r "," t "," p "," $1 "," $2 }' \
          >>"$out/runs.csv"
    done
    stop
    echo "round $round/$rounds: $target done" >&2
  done
done

# Medians per (pipeline, test, target), then the ratio.
awk -F, 'NR > 1 { key = $3 "," $4 "," $2; v[key] = v[key] " " $5 }
END {
  for (k in v) {
    n = split(substr(v[k], 2), a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    split(k, parts, ","); med[parts[1] "," parts[2], parts[3]] = m; seen[parts[1] "," parts[2]] = 1
  }
  print "pipeline,test,reactor_rps,redis_rps,ratio"
  for (s in seen) printf "%s,%.0f,%.0f,%.2f\n", s, med[s, "reactor"], med[s, "redis"], (med[s, "redis"] > 0 ? med[s, "reactor"] / med[s, "redis"] : 0)
}' "$out/runs.csv" | { read -r header; echo "$header"; sort -t, -k1,1n -k2,2; } >"$out/results.csv"

{
  printf "resp suite: redis-benchmark -c %s -n %s -t %s, median of %s rounds (A B A B)\n" \
    "$clients" "$requests" "$tests" "$rounds"
  printf "%-4s %-12s %14s %14s %8s\n" "-P" "test" "reactor rps" "redis rps" "ratio"
  tail -n +2 "$out/results.csv" | while IFS=, read -r p t a b r; do
    printf "%-4s %-12s %14s %14s %7sx\n" "$p" "$t" "$a" "$b" "$r"
  done
} | tee "$out/table.txt"
echo "results: $out"

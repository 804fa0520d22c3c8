#include "load_report.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "load_json.hpp"

namespace load {
namespace {

double per_second(std::uint64_t n, double seconds) {
  return seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
}
double us(std::uint64_t ns) {
  return static_cast<double>(ns) / 1000.0;
}
double round_to(double v, double step) {
  return std::round(v / step) * step;
}
double round1(double v) {
  return round_to(v, 0.1);
}

std::optional<double> rss_per_conn(const LoadTotals& t) {
  if (!t.rss_before || !t.rss_holding || t.connections == 0) return std::nullopt;
  return (static_cast<double>(*t.rss_holding) - static_cast<double>(*t.rss_before)) /
         static_cast<double>(t.connections);
}

}  // namespace

std::string errno_name(int e) {
  const char* name = ::strerrorname_np(e);
  return name ? name : "errno " + std::to_string(e);
}

std::string connect_causes(const LoadTotals& t) {
  std::string out;
  for (auto [e, n] : t.connect_errnos) {
    if (!out.empty()) out += ", ";
    out += errno_name(e) + " (" + std::strerror(e) + "): " + std::to_string(n);
  }
  return out;
}

std::string report_json(const LoadOptions& o, const LoadTotals& t) {
  JsonWriter j;
  j.begin_object();
  j.field("mode", name_of(o.mode));
  j.field("target", o.target);
  j.field("threads", o.threads);
  j.field("close", name_of(o.close));
  j.field("sources", o.sources);
  j.field("timeout_s", o.timeout_s);
  j.field("elapsed_s", t.elapsed_s);
  j.field("connections", t.connections);
  j.field("bytes_sent", t.bytes_sent);
  j.field("bytes_received", t.bytes_received);
  j.field("errors", t.errors());
  j.field("errors_connect", t.errors_connect);
  j.begin_object("errors_connect_by_cause");
  for (auto [e, n] : t.connect_errnos) j.field(errno_name(e), n);
  j.end_object();
  j.field("errors_timeout", t.errors_timeout);
  j.field("errors_io", t.errors_io);
  j.field("errors_verify", t.errors_verify);
  auto latency = [&] {
    j.field("p50_us", round1(us(t.latency.percentile(50))));
    j.field("p99_us", round1(us(t.latency.percentile(99))));
    j.field("p999_us", round1(us(t.latency.percentile(99.9))));
    j.field("max_us", round1(us(t.latency.max())));
    j.field("mean_us", round1(t.latency.mean() / 1000.0));
  };
  switch (o.mode) {
    case Mode::connrate:
      j.field("duration_s", o.duration_s);
      j.field("concurrency", o.concurrency);
      j.field("size", static_cast<std::uint64_t>(o.size));
      j.field("count", static_cast<std::int64_t>(o.count));
      j.field("conn_per_sec", round1(per_second(t.connections, t.elapsed_s)));
      latency();
      break;
    case Mode::echo:
      j.field("duration_s", o.duration_s);
      j.field("pipeline", o.pipeline);
      j.field("size", static_cast<std::uint64_t>(o.size));
      j.field("msgs", t.msgs);
      j.field("msgs_per_sec", round1(per_second(t.msgs, t.elapsed_s)));
      j.field("mb_per_sec", round_to(per_second(t.bytes_received, t.elapsed_s) / 1e6, 0.001));
      j.field("idle", o.idle);
      j.field("idle_ready", t.idle_ready);
      if (t.server_cpu_s)
        j.field("server_cpu_s", *t.server_cpu_s);
      else
        j.null_field("server_cpu_s");
      latency();
      break;
    case Mode::idle:
      j.field("requested", o.connections);
      j.field("hold_s", o.hold_s);
      j.field("alive", t.alive);
      j.field("failed", t.failed);
      if (o.server_pid > 0)
        j.field("server_pid", static_cast<std::int64_t>(o.server_pid));
      else
        j.null_field("server_pid");
      if (t.rss_before)
        j.field("rss_before_bytes", *t.rss_before);  // private PSS summed over the server's tree
      else
        j.null_field("rss_before_bytes");
      if (t.rss_holding)
        j.field("rss_holding_bytes", *t.rss_holding);
      else
        j.null_field("rss_holding_bytes");
      if (auto per = rss_per_conn(t))
        j.field("rss_per_conn_bytes", round1(*per));
      else
        j.null_field("rss_per_conn_bytes");
      break;
  }
  j.end_object();
  return j.str();
}

std::string report_text(const LoadOptions& o, const LoadTotals& t) {
  std::string out;
  char line[256];
  auto add = [&](const char* fmt, auto... args) {
    std::snprintf(line, sizeof(line), fmt, args...);
    out += line;
  };
  add("reactor-load %s -> %s  threads=%d close=%s sources=%d\n",
      std::string(name_of(o.mode)).c_str(), o.target.c_str(), o.threads,
      std::string(name_of(o.close)).c_str(), o.sources);
  auto latency = [&](const char* what) {
    add("  latency (%s): p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us\n", what,
        us(t.latency.percentile(50)), us(t.latency.percentile(99)), us(t.latency.percentile(99.9)),
        us(t.latency.max()));
  };
  switch (o.mode) {
    case Mode::connrate:
      add("  %.0f conn/s  (%llu connections in %.2f s, concurrency %d, %zu B each)\n",
          per_second(t.connections, t.elapsed_s), static_cast<unsigned long long>(t.connections),
          t.elapsed_s, o.concurrency, o.size);
      latency("connect to last byte");
      break;
    case Mode::echo:
      add("  %.0f msg/s  %.1f MB/s  (%llu messages in %.2f s, %d connections x %d in flight x %zu "
          "B)\n",
          per_second(t.msgs, t.elapsed_s), per_second(t.bytes_received, t.elapsed_s) / 1e6,
          static_cast<unsigned long long>(t.msgs), t.elapsed_s, o.connections, o.pipeline, o.size);
      latency("per message");
      break;
    case Mode::idle:
      add("  %d connections held %.1f s: alive %llu  failed %llu\n", o.connections, o.hold_s,
          static_cast<unsigned long long>(t.alive), static_cast<unsigned long long>(t.failed));
      if (auto per = rss_per_conn(t)) {
        add("  server memory (private PSS over its process tree): %.1f MiB before, %.1f MiB holding: %.0f "
            "bytes per connection\n",
            static_cast<double>(*t.rss_before) / 1048576.0,
            static_cast<double>(*t.rss_holding) / 1048576.0, *per);
      }
      break;
  }
  add("  bytes sent %llu  received %llu  errors %llu (connect %llu, timeout %llu, io %llu, verify "
      "%llu)\n",
      static_cast<unsigned long long>(t.bytes_sent),
      static_cast<unsigned long long>(t.bytes_received),
      static_cast<unsigned long long>(t.errors()),
      static_cast<unsigned long long>(t.errors_connect),
      static_cast<unsigned long long>(t.errors_timeout),
      static_cast<unsigned long long>(t.errors_io),
      static_cast<unsigned long long>(t.errors_verify));
  if (!t.connect_errnos.empty()) out += "  connect errors by cause: " + connect_causes(t) + "\n";
  return out;
}

}  // namespace load

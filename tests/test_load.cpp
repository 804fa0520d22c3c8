// reactor-load and reactor-bench: their pure parts (histogram, byte pattern, command lines, JSON,
// /proc parsing, table output) as unit tests, and, in TEST_SUITE("integration"), the real
// programs against textbook-echo. The integration cases find the binaries through the
// TEXTBOOK_ECHO, REACTOR_LOAD and REACTOR_BENCH environment variables (set by meson).
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_options.hpp"
#include "bench_table.hpp"
#include "load_histogram.hpp"
#include "load_json.hpp"
#include "load_options.hpp"
#include "load_pattern.hpp"
#include "load_proc.hpp"
#include "load_report.hpp"
#include "reactor/models/registry.hpp"
#include "support/process.hpp"

namespace {

using namespace std::chrono_literals;
using load::LatencyHistogram;

// Within `rel` relative error.
bool near(double actual, double expected, double rel) {
  return std::fabs(actual - expected) <= rel * std::fabs(expected);
}

load::ParseResult parse(std::initializer_list<std::string_view> args) {
  return load::parse_load_options(std::vector<std::string_view>(args));
}

std::string error_of(const load::ParseResult& r) {
  auto* e = std::get_if<load::ParseError>(&r);
  return e ? e->message : std::string("<no error>");
}

}  // namespace

TEST_SUITE("load histogram") {
  TEST_CASE(
      "every bucket's width is at most 1/64 of its lowest value, and buckets tile the range") {
    for (std::size_t i = 1; i + 1 < LatencyHistogram::kBucketCount; ++i) {
      CHECK(LatencyHistogram::lowest_of(i) + LatencyHistogram::width_of(i) ==
            LatencyHistogram::lowest_of(i + 1));
      if (i >= LatencyHistogram::kSubBuckets) {
        CHECK(LatencyHistogram::width_of(i) * 64 <= LatencyHistogram::lowest_of(i));
      }
    }
    std::mt19937_64 rng(7);
    for (int k = 0; k < 100000; ++k) {
      std::uint64_t v = rng() >> (rng() % 64);
      std::size_t i = LatencyHistogram::index_of(v);
      REQUIRE(i < LatencyHistogram::kBucketCount);
      CHECK(LatencyHistogram::lowest_of(i) <= v);
      CHECK(v - LatencyHistogram::lowest_of(i) < LatencyHistogram::width_of(i));
    }
    CHECK(LatencyHistogram::index_of(~std::uint64_t{0}) == LatencyHistogram::kBucketCount - 1);
  }

  TEST_CASE("an empty histogram reports zeros") {
    LatencyHistogram h;
    CHECK(h.count() == 0);
    CHECK(h.percentile(50) == 0);
    CHECK(h.percentile(99.9) == 0);
    CHECK(h.max() == 0);
    CHECK(h.min() == 0);
  }

  TEST_CASE("small values are exact") {
    LatencyHistogram h;
    for (std::uint64_t v = 1; v <= 50; ++v) h.record(v);
    CHECK(h.percentile(50) == 25);
    CHECK(h.percentile(100) == 50);
    CHECK(h.percentile(0) == 1);
    CHECK(h.percentile(2) == 1);
    CHECK(h.percentile(3) == 2);  // nearest rank: ceil(0.03 * 50) = 2
  }

  TEST_CASE("a constant distribution reports that value at every percentile") {
    LatencyHistogram h;
    for (int i = 0; i < 1000; ++i) h.record(123456);
    for (double p : {0.0, 50.0, 99.0, 99.9, 100.0}) CHECK(h.percentile(p) == 123456);
    CHECK(h.mean() == doctest::Approx(123456));
  }

  TEST_CASE("uniform 1..1e6 ns: percentiles within 1%") {
    LatencyHistogram h;
    for (std::uint64_t v = 1; v <= 1'000'000; ++v) h.record(v);
    CHECK(near(static_cast<double>(h.percentile(50)), 500'000, 0.01));
    CHECK(near(static_cast<double>(h.percentile(90)), 900'000, 0.01));
    CHECK(near(static_cast<double>(h.percentile(99)), 990'000, 0.01));
    CHECK(near(static_cast<double>(h.percentile(99.9)), 999'000, 0.01));
    CHECK(h.max() == 1'000'000);
    CHECK(h.min() == 1);
    CHECK(h.mean() == doctest::Approx(500'000.5));
  }

  TEST_CASE("exponential distribution: percentiles match -mean*ln(1-q) within 1%") {
    const double mean = 50'000;  // 50 us
    const int n = 200'000;
    LatencyHistogram h;
    for (int i = 0; i < n; ++i) {
      double q = (i + 0.5) / n;
      h.record(static_cast<std::uint64_t>(-mean * std::log(1 - q)));
    }
    for (double p : {50.0, 90.0, 99.0, 99.9}) {
      double expected = -mean * std::log(1 - p / 100);
      CAPTURE(p);
      CHECK(near(static_cast<double>(h.percentile(p)), expected, 0.01));
    }
  }

  TEST_CASE("merged histograms equal one histogram fed both streams") {
    LatencyHistogram a, b, both;
    std::mt19937_64 rng(3);
    for (int i = 0; i < 10000; ++i) {
      std::uint64_t v = rng() % 10'000'000;
      (i % 2 ? a : b).record(v);
      both.record(v);
    }
    a.merge(b);
    CHECK(a.count() == both.count());
    CHECK(a.max() == both.max());
    CHECK(a.min() == both.min());
    for (double p : {1.0, 50.0, 99.0, 99.9}) CHECK(a.percentile(p) == both.percentile(p));
  }
}

TEST_SUITE("load pattern") {
  TEST_CASE("a stream checks against itself at any offset and split point") {
    unsigned char buf[1000];
    load::fill_pattern(42, 12345, buf, sizeof(buf));
    CHECK(load::matches_pattern(42, 12345, buf, sizeof(buf)));
    CHECK(load::matches_pattern(42, 12345, buf, 300));
    CHECK(load::matches_pattern(42, 12645, buf + 300, 700));
  }

  TEST_CASE("a shifted, altered or foreign stream does not match") {
    unsigned char buf[64];
    load::fill_pattern(42, 0, buf, sizeof(buf));
    for (std::uint64_t shift : {1u, 2u, 64u, 256u, 65536u}) {
      CAPTURE(shift);
      CHECK_FALSE(load::matches_pattern(42, shift, buf, sizeof(buf)));
    }
    CHECK_FALSE(load::matches_pattern(43 << 20, 0, buf, sizeof(buf)));
    buf[17] ^= 1;
    CHECK_FALSE(load::matches_pattern(42, 0, buf, sizeof(buf)));
  }
}

TEST_SUITE("reactor-load options") {
  TEST_CASE("defaults per mode") {
    auto echo =
        std::get<load::LoadOptions>(parse({"--target", "tcp://127.0.0.1:1", "--mode", "echo"}));
    CHECK(echo.threads == 1);
    CHECK(echo.connections == 50);
    CHECK(echo.pipeline == 16);
    CHECK(echo.size == 64);
    CHECK(echo.timeout_s == 5);
    CHECK(echo.close == load::CloseMode::rst);
    CHECK(echo.sources == 0);  // auto
    CHECK(load::effective_sources(echo, true) == 1);
    CHECK_FALSE(echo.json);
    auto idle = std::get<load::LoadOptions>(parse({"--mode=idle", "--target=unix:/tmp/x"}));
    CHECK(idle.mode == load::Mode::idle);
    CHECK(idle.connections == 1000);
    CHECK(idle.target == "unix:/tmp/x");
    CHECK(load::effective_sources(idle, false) == 1);
    idle.connections = 19000;
    CHECK(load::effective_sources(idle, true) == 3);
    idle.sources = 1;
    CHECK(load::effective_sources(idle, true) == 1);
  }

  TEST_CASE("every option is read, in both --name value and --name=value forms") {
    auto o = std::get<load::LoadOptions>(
        parse({"--target", "tcp://127.0.0.1:9", "--mode", "connrate", "--threads=3", "--duration",
               "2.5", "--timeout=0.5", "--json", "--concurrency", "64", "--size", "1000", "--close",
               "fin", "--sources", "8"}));
    CHECK(o.mode == load::Mode::connrate);
    CHECK(o.threads == 3);
    CHECK(o.duration_s == 2.5);
    CHECK(o.timeout_s == 0.5);
    CHECK(o.json);
    CHECK(o.concurrency == 64);
    CHECK(o.size == 1000);
    CHECK(o.close == load::CloseMode::fin);
    CHECK(o.sources == 8);
    auto idle = std::get<load::LoadOptions>(
        parse({"--target", "tcp://127.0.0.1:9", "--mode", "idle", "--connections", "19000",
               "--hold", "0", "--server-pid", "1234"}));
    CHECK(idle.connections == 19000);
    CHECK(idle.hold_s == 0);
    CHECK(idle.server_pid == 1234);
  }

  TEST_CASE("--help wins over everything else") {
    CHECK(std::holds_alternative<load::HelpRequested>(parse({"--mode", "bogus", "--help"})));
    CHECK(load::load_usage().find("--mode connrate|echo|idle") != std::string::npos);
  }

  TEST_CASE("bad command lines give one clear line") {
    const std::string t = "tcp://127.0.0.1:1";
    CHECK(error_of(parse({"--mode", "echo"})).find("--target is required") == 0);
    CHECK(error_of(parse({"--target", t})).find("--mode is required") == 0);
    CHECK(error_of(parse({"--target", t, "--mode", "flood"})) ==
          "--mode: bad value 'flood' (expected connrate, echo or idle)");
    CHECK(error_of(parse({"--target", t, "--mode", "echo", "--threads", "0"}))
              .find("--threads: bad value '0'") == 0);
    CHECK(error_of(parse({"--target", t, "--mode", "echo", "--threads", "2x"})).find("--threads") ==
          0);
    CHECK(
        error_of(parse({"--target", t, "--mode", "echo", "--duration", "-1"})).find("--duration") ==
        0);
    CHECK(error_of(parse({"--target", t, "--mode", "echo", "--duration", "nan"}))
              .find("--duration") == 0);
    CHECK(error_of(parse({"--target", t, "--mode", "echo", "--size"})) == "--size needs a value");
    CHECK(error_of(parse({"--target", t, "--mode", "echo", "--close", "slam"})).find("--close") ==
          0);
    CHECK(
        error_of(parse({"--target", t, "--mode", "echo", "--sources", "255"})).find("--sources") ==
        0);
    CHECK(error_of(parse({"--target", t, "--mode", "echo", "--frobnicate"})) ==
          "unknown option '--frobnicate' (see --help)");
    CHECK(error_of(parse({"--target", t, "--mode", "echo", "stray"})) ==
          "unknown option 'stray' (see --help)");  // the same wording in every tool
    // A single-valued option given twice is an error, not last-wins.
    CHECK(error_of(parse({"--target", t, "--mode", "echo", "--size", "1", "--size=2"})) ==
          "--size given twice (it takes one value)");
    CHECK(error_of(parse({"--target", t, "--target", t, "--mode", "echo"})) ==
          "--target given twice (it takes one value)");
    CHECK(error_of(parse({"--target", t, "--mode", "echo", "--json=yes"})) ==
          "--json takes no value");
    for (const auto& r : {parse({"--mode", "echo"}), parse({"--target", t, "--mode", "x"})}) {
      CHECK(error_of(r).find('\n') == std::string::npos);
    }
  }

  TEST_CASE("--count (connrate), --idle and --server-pid (echo) are read and placed") {
    auto c = std::get<load::LoadOptions>(
        parse({"--target", "tcp://127.0.0.1:1", "--mode", "connrate", "--count", "2500"}));
    CHECK(c.count == 2500);
    auto e = std::get<load::LoadOptions>(parse({"--target", "tcp://127.0.0.1:1", "--mode", "echo",
                                                "--idle", "18000", "--server-pid", "42"}));
    CHECK(e.idle == 18000);
    CHECK(e.server_pid == 42);
    CHECK(load::effective_sources(e, true) == 3);  // 18,050 connections: one source per 8000
    CHECK(error_of(parse({"--target", "tcp://127.0.0.1:1", "--mode", "echo", "--count", "5"})) ==
          "--count does not apply to --mode echo");
    CHECK(error_of(parse({"--target", "tcp://127.0.0.1:1", "--mode", "connrate", "--idle", "5"})) ==
          "--idle does not apply to --mode connrate");
    CHECK(error_of(parse({"--target", "tcp://127.0.0.1:1", "--mode", "connrate", "--count", "0"}))
              .find("--count") == 0);
  }

  TEST_CASE("an option that does not apply to the mode is refused") {
    const std::string t = "tcp://127.0.0.1:1";
    CHECK(error_of(parse({"--target", t, "--mode", "connrate", "--pipeline", "4"})) ==
          "--pipeline does not apply to --mode connrate");
    CHECK(error_of(parse({"--target", t, "--mode", "echo", "--concurrency", "4"})) ==
          "--concurrency does not apply to --mode echo");
    CHECK(error_of(parse({"--target", t, "--mode", "echo", "--hold", "4"})) ==
          "--hold does not apply to --mode echo");
    CHECK(
        error_of(parse({"--target", t, "--mode", "idle", "--duration", "4"})).find("--duration") ==
        0);
  }
}

TEST_SUITE("reactor-bench options") {
  auto bparse = [](std::initializer_list<std::string_view> args) {
    return bench::parse_bench_options(std::vector<std::string_view>(args));
  };

  TEST_CASE("defaults: the default rows (empty list), 3 rounds of 5 s, pinned, compare suite") {
    auto o = std::get<bench::BenchOptions>(bparse({}));
    CHECK(o.models.empty());
    CHECK(o.rounds == 3);
    CHECK(o.phase_s == 5);
    CHECK(o.suite == "compare");
    CHECK(o.pin);
    CHECK(o.out_dir.empty());
    CHECK(bench::kDefaultModels == std::vector<std::string>{"epoll", "reuseport", "thread", "fork",
                                                            "textbook epoll", "textbook thread",
                                                            "textbook fork"});
  }

  TEST_CASE("--quick shortens phases and takes one round unless told otherwise") {
    auto q = std::get<bench::BenchOptions>(bparse({"--quick"}));
    CHECK(q.phase_s == 1);
    CHECK(q.rounds == 1);
    auto q3 = std::get<bench::BenchOptions>(bparse({"--quick", "--duration", "3", "--rounds=2"}));
    CHECK(q3.phase_s == 3);
    CHECK(q3.rounds == 2);
    auto scale = std::get<bench::BenchOptions>(bparse({"--suite", "scale"}));
    CHECK(scale.suite == "scale");
    CHECK(scale.phase_s == 2);
    CHECK(std::get<bench::BenchOptions>(bparse({"--rounds", "7"})).rounds == 7);
  }

  TEST_CASE("model names: any server model, textbook rows by alias, nothing odd") {
    CHECK(bench::canonical_model("epoll") == "epoll");
    CHECK(bench::canonical_model("threadpool") == "threadpool");
    CHECK(bench::canonical_model("textbook") == "textbook epoll");
    CHECK(bench::canonical_model("textbook-fork") == "textbook fork");
    CHECK(bench::canonical_model("textbook thread") == "textbook thread");
    CHECK(bench::canonical_model("textbook-kqueue") == "");
    CHECK(bench::canonical_model("a;b") == "");
    CHECK(bench::canonical_model("Epoll") == "");
    CHECK(bench::canonical_model("") == "");
    CHECK(bench::is_textbook("textbook fork"));
    CHECK_FALSE(bench::is_textbook("fork"));
    auto o = std::get<bench::BenchOptions>(
        bparse({"--models", "poll,select,prefork,threadpool,textbook-fork,textbook"}));
    CHECK(o.models == std::vector<std::string>{"poll", "select", "prefork", "threadpool",
                                               "textbook fork", "textbook epoll"});
  }

  TEST_CASE("a model is listed in the server's help only as a whole word") {
    std::string help = "  --model MODEL   epoll (default), fork, thread, prefork or reuseport\n";
    CHECK(bench::help_lists_model(help, "epoll"));
    CHECK(bench::help_lists_model(help, "prefork"));
    CHECK(bench::help_lists_model(help, "reuseport"));
    CHECK_FALSE(bench::help_lists_model(help, "poll"));  // inside "epoll"
    CHECK_FALSE(bench::help_lists_model(help, "threadpool"));
    CHECK_FALSE(bench::help_lists_model(help, "select"));
    CHECK(bench::help_lists_model("poll", "poll"));
    CHECK(bench::help_lists_model("epoll|poll|select", "select"));
  }

  TEST_CASE("--models selects rows in the given order, without duplicates") {
    auto o = std::get<bench::BenchOptions>(
        bparse({"--models", "thread,epoll,thread", "--out=/tmp/r", "--no-pin"}));
    CHECK(o.models == std::vector<std::string>{"thread", "epoll"});
    CHECK(o.out_dir == "/tmp/r");
    CHECK_FALSE(o.pin);
  }

  TEST_CASE("bad command lines give one clear line") {
    auto err = [&](std::initializer_list<std::string_view> args) {
      auto r = bparse(args);
      auto* e = std::get_if<bench::BenchParseError>(&r);
      return e ? e->message : std::string("<no error>");
    };
    CHECK(err({"--models", "epoll,Kqueue!"}).find("--models: bad value 'epoll,Kqueue!'") == 0);
    CHECK(err({"--rounds", "0"}).find("--rounds") == 0);
    CHECK(err({"--suite", "fast"}).find("--suite: bad value 'fast'") == 0);
    CHECK(err({"--models", ""}).find("--models") == 0);
    CHECK(err({"--duration", "0"}).find("--duration") == 0);
    CHECK(err({"--workers", "many"}).find("--workers") == 0);
    CHECK(err({"--out"}) == "--out needs a value");
    CHECK(err({"--fast"}) == "unknown option '--fast' (see --help)");
    CHECK(err({"stray"}) == "unknown option 'stray' (see --help)");
    CHECK(err({"--out", "a", "--out", "b"}) == "--out given twice (it takes one value)");
    CHECK(err({"--models=epoll", "--models", "fork"}) ==
          "--models given twice (it takes one value)");
    CHECK(err({"--quick=1"}) == "--quick takes no value");
  }
}

TEST_SUITE("load json") {
  TEST_CASE("the writer's output parses back to the same values") {
    load::JsonWriter w;
    w.begin_object();
    w.field("s", "a \"quoted\"\\ line\n\x01");
    w.field("big", std::uint64_t{18446744073709551615u});
    w.field("neg", std::int64_t{-5});
    w.field("pi", 3.25);
    w.field("inf", std::numeric_limits<double>::infinity());
    w.field("yes", true);
    w.null_field("nothing");
    w.begin_array("list");
    w.field("", 1).field("", "two");
    w.begin_object().field("k", 3).end_object();
    w.end_array();
    w.raw_field("raw", "{\"x\":[1,2]}");
    w.end_object();
    std::string error;
    auto v = load::JsonValue::parse(w.str(), &error);
    REQUIRE_MESSAGE(v, error);
    CHECK(v->find("s")->as_string() == "a \"quoted\"\\ line\n\x01");
    CHECK(v->u64_or("big", 0) == 18446744073709551615u);
    CHECK(v->number_or("neg", 0) == -5);
    CHECK(v->number_or("pi", 0) == 3.25);
    CHECK(v->find("inf")->is_null());
    CHECK(v->find("yes")->as_bool());
    CHECK(v->find("nothing")->is_null());
    REQUIRE(v->find("list")->items().size() == 3);
    CHECK(v->find("list")->items()[1].as_string() == "two");
    CHECK(v->find("list")->items()[2].number_or("k", 0) == 3);
    CHECK(v->find("raw")->find("x")->items().size() == 2);
    CHECK(v->find("absent") == nullptr);
    CHECK(v->number_or("absent", -1) == -1);
  }

  TEST_CASE("malformed documents are refused with a position") {
    std::string error;
    for (const char* bad : {"", "{", "{\"a\":}", "{\"a\":1,}", "[1 2]", "{\"a\":1} x", "\"\\q\"",
                            "01x", "{\"a\":tru}", "\"unterminated"}) {
      CAPTURE(bad);
      CHECK_FALSE(load::JsonValue::parse(bad, &error));
    }
    CHECK_FALSE(load::JsonValue::parse("{\"a\":1} x", &error).has_value());
    CHECK(error.find("offset") != std::string::npos);
    auto u = load::JsonValue::parse("\"\\u00e9\\ud83d\\ude00\"");
    REQUIRE(u);
    CHECK(u->as_string() == "\xc3\xa9\xf0\x9f\x98\x80");
  }

  TEST_CASE("reactor-load's report carries the documented fields for each mode") {
    load::LoadTotals t;
    t.elapsed_s = 2;
    t.connections = 100;
    t.bytes_sent = 64'000'000;
    t.bytes_received = 64'000'000;
    t.msgs = 1000;
    for (std::uint64_t v = 1000; v <= 100000; v += 1000) t.latency.record(v);
    load::LoadOptions o;
    o.target = "tcp://127.0.0.1:1";

    o.mode = load::Mode::connrate;
    auto c = load::JsonValue::parse(load::report_json(o, t));
    REQUIRE(c);
    for (const char* f : {"mode", "target", "threads", "close", "sources", "elapsed_s",
                          "connections", "bytes_sent", "bytes_received", "errors", "conn_per_sec",
                          "p50_us", "p99_us", "max_us", "concurrency", "size"}) {
      CAPTURE(f);
      CHECK(c->find(f) != nullptr);
    }
    CHECK(c->find("mode")->as_string() == "connrate");
    CHECK(c->find("close")->as_string() == "rst");
    CHECK(c->number_or("conn_per_sec", 0) == 50);
    CHECK(c->number_or("max_us", 0) == 100);
    CHECK(near(c->number_or("p50_us", 0), 50, 0.01));

    o.mode = load::Mode::echo;
    auto e = load::JsonValue::parse(load::report_json(o, t));
    REQUIRE(e);
    for (const char* f :
         {"msgs_per_sec", "mb_per_sec", "p50_us", "p99_us", "p999_us", "errors", "pipeline"}) {
      CAPTURE(f);
      CHECK(e->find(f) != nullptr);
    }
    CHECK(e->number_or("msgs_per_sec", 0) == 500);
    CHECK(e->number_or("mb_per_sec", 0) == 32);

    o.mode = load::Mode::idle;
    o.connections = 100;
    t.alive = 99;
    t.failed = 1;
    t.rss_before = 1'000'000;
    t.rss_holding = 1'500'000;
    auto i = load::JsonValue::parse(load::report_json(o, t));
    REQUIRE(i);
    CHECK(i->u64_or("alive", 0) == 99);
    CHECK(i->u64_or("failed", 0) == 1);
    CHECK(i->number_or("rss_per_conn_bytes", 0) == 5000);
    CHECK(i->u64_or("rss_before_bytes", 0) == 1'000'000);
  }
}

TEST_SUITE("proc and table helpers") {
  TEST_CASE("a stat line whose command holds spaces and parentheses still parses") {
    std::string line =
        "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 12 3 20 0 1 0 100 1000 "
        "10";
    auto t = load::parse_stat_line(line);
    REQUIRE(t);
    CHECK(t->parent == 17);
    CHECK(t->self_ticks == 325);
    CHECK(t->children_ticks == 15);
    CHECK_FALSE(load::parse_stat_line("12 (short) S 1 2"));
  }

  TEST_CASE("idle memory counts anonymous and shared-memory PSS, not code pages") {
    const std::string rollup =
        "55d0c0000000-7ffd00000000 ---p 00000000 00:00 0                          [rollup]\n"
        "Rss:                3600 kB\nPss:                1439 kB\nPss_Dirty:           220 kB\n"
        "Pss_Anon:            216 kB\nPss_File:           1219 kB\nPss_Shmem:             4 kB\n";
    CHECK(load::parse_pss(rollup) == 1439u * 1024);
    CHECK(load::parse_private_pss(rollup) == 220u * 1024);
    // An older kernel without Pss_Anon: all of Pss.
    CHECK(load::parse_private_pss("Rss: 10 kB\nPss: 8 kB\n") == 8u * 1024);
    CHECK_FALSE(load::parse_private_pss("Rss: 10 kB\n"));
    // This process: its private part is some of its PSS.
    std::ifstream in("/proc/self/smaps_rollup");
    const std::string own((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto all = load::parse_pss(own);
    const auto mine = load::parse_private_pss(own);
    REQUIRE(all);
    REQUIRE(mine);
    CHECK(*mine > 0);
    CHECK(*mine <= *all);
  }

  TEST_CASE("this process's own CPU time and RSS are readable") {
    auto t = load::read_cpu_times(::getpid());
    REQUIRE(t);
    CHECK(t->parent == ::getppid());
    CHECK(load::read_rss_bytes(::getpid()).value_or(0) > 0);
    CHECK(load::tree_cpu_seconds(::getpid()) >= 0);
    CHECK_FALSE(load::read_rss_bytes(0x7ffffff0));
  }

  TEST_CASE("a process tree's CPU time counts live children, then reaped ones") {
    int ready[2], release[2];
    REQUIRE(::pipe(ready) == 0);
    REQUIRE(::pipe(release) == 0);
    pid_t kid = ::fork();
    REQUIRE(kid >= 0);
    if (kid == 0) {
      // Burn 0.3 s of CPU, say so, then wait (alive) until released.
      ::close(ready[0]);
      ::close(release[1]);
      timespec start{}, now{};
      ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
      do {
        ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
      } while ((now.tv_sec - start.tv_sec) * 1e9 + (now.tv_nsec - start.tv_nsec) < 0.3e9);
      char c = 1;
      (void)!::write(ready[1], &c, 1);
      (void)!::read(release[0], &c, 1);
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(release[0]);
    pollfd p{ready[0], POLLIN, 0};
    REQUIRE(::poll(&p, 1, 20'000) == 1);
    auto self = load::read_cpu_times(::getpid());
    REQUIRE(self);
    const double own =
        static_cast<double>(self->self_ticks + self->children_ticks) / ::sysconf(_SC_CLK_TCK);
    double live = load::tree_cpu_seconds(::getpid());
    CHECK(live - own >= 0.25);
    ::close(release[1]);
    int status = 0;
    REQUIRE(::waitpid(kid, &status, 0) == kid);
    double reaped = load::tree_cpu_seconds(::getpid());
    CHECK(reaped - own >= 0.25);
    ::close(ready[0]);
  }

  TEST_CASE("tables are aligned: first column left, the rest right") {
    std::string t =
        bench::format_table({{"model", "conn/s"}, {"epoll", "12345"}, {"reuseport", "9"}});
    CHECK(t ==
          "model      conn/s\n"
          "-----------------\n"
          "epoll       12345\n"
          "reuseport       9\n");
  }

  TEST_CASE("median of rounds, and the cell: median with the min-max spread") {
    CHECK(bench::median({}) == -1);
    CHECK(bench::median({5}) == 5);
    CHECK(bench::median({3, 1, 2}) == 2);
    CHECK(bench::median({4, 1, 3, 2}) == 2.5);
    CHECK(bench::median({-1, 7, std::nan("")}) == 7);  // missing samples are left out
    CHECK(bench::grouped(49025.4) == "49,025");
    CHECK(bench::grouped(999) == "999");
    CHECK(bench::grouped(1234567) == "1,234,567");
    CHECK(bench::grouped(-1) == "-");
    CHECK(bench::compact(812) == "812");
    CHECK(bench::compact(47100) == "47.1k");
    CHECK(bench::compact(50249) == "50.2k");
    CHECK(bench::compact(1234567) == "1.23M");
    CHECK(bench::median_spread({47100, 49025, 50249}) == "49,025 (47.1k\u201350.2k)");
    CHECK(bench::median_spread({50249, 47100, 49025, -1}) == "49,025 (47.1k\u201350.2k)");
    CHECK(bench::median_spread({812}) == "812");
    CHECK(bench::median_spread({}) == "-");
    CHECK(bench::median_spread({-1, -1}) == "-");
  }

  TEST_CASE("tables align cells holding multi-byte characters by their columns") {
    std::string t = bench::format_table({{"m", "v"}, {"a", "1 (0\u20132)"}, {"bb", "12345678"}});
    CHECK(t ==
          "m          v\n"
          "------------\n"
          "a    1 (0\u20132)\n"
          "bb  12345678\n");
  }

  TEST_CASE("csv fields are quoted only when needed; missing numbers print as -") {
    CHECK(bench::csv_field("plain") == "plain");
    CHECK(bench::csv_field("a,b") == "\"a,b\"");
    CHECK(bench::csv_field("say \"hi\"") == "\"say \"\"hi\"\"\"");
    CHECK(bench::fixed(-1, 1) == "-");
    CHECK(bench::fixed(12.345, 1) == "12.3");
    CHECK(bench::ratio(50, 100) == "0.50x");
    CHECK(bench::ratio(50, -1) == "-");
  }
}

// Integration helpers: the real programs, as processes, against textbook-echo on loopback.

namespace {

std::string binary(const char* env) {
  const char* v = std::getenv(env);
  REQUIRE_MESSAGE(v != nullptr, std::string(env), " is not set (run through meson test)");
  return v;
}

std::string temp_dir() {
  char tmpl[] = "/tmp/test_load.XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  return tmpl;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// An echo server (textbook-echo by default) on an ephemeral port; stopped (SIGTERM) by stop().
struct EchoServer {
  explicit EchoServer(std::vector<std::string> argv = {}) {
    if (argv.empty()) argv = {binary("TEXTBOOK_ECHO"), "--listen", "tcp://127.0.0.1:0"};
    const std::string path = argv.front();
    const std::string error = server.start(path, {argv.begin() + 1, argv.end()});
    REQUIRE_MESSAGE(error.empty(), error);
    const std::string first = test::lines_of(server.process.out()).front();
    REQUIRE(first.rfind("listening on tcp://127.0.0.1:", 0) == 0);
    target = first.substr(13);
  }
  pid_t pid() const { return server.pid(); }
  // The summary line's numbers.
  std::map<std::string, std::uint64_t> stop() {
    auto fields = test::stop_server(server, 10s);
    REQUIRE(!fields.empty());
    return fields;
  }
  test::ServerProcess server;
  std::string target;
};

struct RunResult {
  int status = -1;
  std::string out;
  std::string err;
};

RunResult run(std::vector<std::string> argv, std::chrono::milliseconds timeout) {
  const std::string path = argv.front();
  test::Process child = test::run_to_exit(path, {argv.begin() + 1, argv.end()}, timeout + 5s);
  return {*child.wait_exit(0ms), child.out(), child.err()};
}

load::JsonValue run_load(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {binary("REACTOR_LOAD")};
  argv.insert(argv.end(), args.begin(), args.end());
  RunResult r = run(argv, 30s);
  INFO("stderr: ", r.err);
  CHECK(WIFEXITED(r.status));
  CHECK(WEXITSTATUS(r.status) == 0);
  // --json: exactly one line, one object, nothing else on stdout.
  REQUIRE(!r.out.empty());
  CHECK(r.out.back() == '\n');
  CHECK(r.out.find('\n') == r.out.size() - 1);
  std::string error;
  auto v = load::JsonValue::parse(r.out, &error);
  REQUIRE_MESSAGE(v, error, ": ", r.out);
  REQUIRE(v->is_object());
  return *v;
}

}  // namespace

TEST_SUITE("integration") {
  TEST_CASE("reactor-load's byte counts match each other and textbook-echo's summary") {
    EchoServer server;

    auto echo =
        run_load({"--target", server.target, "--mode", "echo", "--duration", "1", "--json"});
    CHECK(echo.find("mode")->as_string() == "echo");
    CHECK(echo.u64_or("errors", 1) == 0);
    CHECK(echo.u64_or("msgs", 0) > 0);
    CHECK(echo.number_or("msgs_per_sec", 0) > 0);
    CHECK(echo.number_or("p99_us", 0) >= echo.number_or("p50_us", 0));
    CHECK(echo.u64_or("bytes_sent", 0) == echo.u64_or("bytes_received", 1));
    CHECK(echo.u64_or("bytes_sent", 0) == echo.u64_or("msgs", 0) * 64);
    CHECK(echo.u64_or("connections", 0) == 50);

    auto rate = run_load({"--target", server.target, "--mode", "connrate", "--duration", "1",
                          "--concurrency", "8", "--threads", "2", "--json"});
    CHECK(rate.u64_or("errors", 1) == 0);
    CHECK(rate.u64_or("connections", 0) > 0);
    CHECK(rate.number_or("conn_per_sec", 0) > 0);
    CHECK(rate.find("close")->as_string() == "rst");
    CHECK(rate.u64_or("bytes_sent", 0) == rate.u64_or("bytes_received", 1));
    CHECK(rate.u64_or("bytes_sent", 0) == rate.u64_or("connections", 0) * 64);

    auto fin = run_load({"--target", server.target, "--mode", "connrate", "--duration", "0.3",
                         "--close", "fin", "--sources", "4", "--json"});
    CHECK(fin.u64_or("errors", 1) == 0);
    CHECK(fin.find("close")->as_string() == "fin");
    CHECK(fin.u64_or("sources", 0) == 4);

    auto idle = run_load({"--target", server.target, "--mode", "idle", "--connections", "300",
                          "--hold", "0.2", "--server-pid", std::to_string(server.pid()), "--json"});
    CHECK(idle.u64_or("alive", 0) == 300);
    CHECK(idle.u64_or("failed", 1) == 0);
    CHECK(idle.u64_or("rss_before_bytes", 0) > 0);
    CHECK(idle.u64_or("rss_holding_bytes", 0) > 0);
    CHECK(idle.find("rss_per_conn_bytes")->is_number());

    auto summary = server.stop();
    std::uint64_t sent = 0, connections = 0;
    for (const auto* r : {&echo, &rate, &fin, &idle}) {
      sent += r->u64_or("bytes_sent", 0);
      connections += r->u64_or("connections", 0);
    }
    CHECK(summary["bytes_in"] == sent);
    CHECK(summary["bytes_out"] == sent);
    CHECK(summary["connections"] == connections);
  }

  TEST_CASE("reactor-load turns bad arguments and an unreachable target into exit codes") {
    RunResult bad =
        run({binary("REACTOR_LOAD"), "--mode", "flood", "--target", "tcp://127.0.0.1:1"},
            std::chrono::milliseconds(10'000));
    CHECK(WEXITSTATUS(bad.status) == 2);
    CHECK(bad.out.empty());
    CHECK(bad.err == "reactor-load: --mode: bad value 'flood' (expected connrate, echo or idle)\n");

    RunResult target = run({binary("REACTOR_LOAD"), "--mode", "echo", "--target", "ftp://x"},
                           std::chrono::milliseconds(10'000));
    CHECK(WEXITSTATUS(target.status) == 2);
    CHECK(target.err.rfind("reactor-load: --target ftp://x: ", 0) == 0);

    // Nothing listens on port 1: every connect fails, counted, and the run still ends on time.
    RunResult refused = run({binary("REACTOR_LOAD"), "--mode", "connrate", "--target",
                             "tcp://127.0.0.1:1", "--duration", "0.3", "--json"},
                            std::chrono::milliseconds(10'000));
    CHECK(WEXITSTATUS(refused.status) == 1);
    auto v = load::JsonValue::parse(refused.out);
    REQUIRE(v);
    CHECK(v->u64_or("errors_connect", 0) > 0);
    // Each failed connect is counted under its cause, by errno name.
    const auto* causes = v->find("errors_connect_by_cause");
    REQUIRE(causes);
    CHECK(causes->u64_or("ECONNREFUSED", 0) == v->u64_or("errors_connect", 1));
    CHECK(v->u64_or("connections", 1) == 0);
    RunResult text = run({binary("REACTOR_LOAD"), "--mode", "connrate", "--target",
                          "tcp://127.0.0.1:1", "--duration", "0.2"},
                         std::chrono::milliseconds(10'000));
    CHECK(text.out.find("connect errors by cause: ECONNREFUSED (Connection refused): ") !=
          std::string::npos);
    CHECK(v->number_or("elapsed_s", 99) < 2);
  }

  TEST_CASE("the textbook fork and thread servers echo byte-exact and print a summary") {
    for (const char* env : {"TEXTBOOK_FORK_ECHO", "TEXTBOOK_THREAD_ECHO"}) {
      CAPTURE(env);
      EchoServer server({binary(env), "--listen", "tcp://127.0.0.1:0"});
      // reactor-load checks every echoed byte against what it sent (errors_verify); 100 kB
      // messages make the servers' writes partial.
      auto echo = run_load({"--target", server.target, "--mode", "echo", "--duration", "0.5",
                            "--connections", "8", "--json"});
      auto big = run_load({"--target", server.target, "--mode", "echo", "--duration", "0.3",
                           "--connections", "2", "--pipeline", "2", "--size", "100000", "--json"});
      auto rate = run_load({"--target", server.target, "--mode", "connrate", "--count", "300",
                            "--duration", "20", "--concurrency", "8", "--json"});
      for (const auto* r : {&echo, &big, &rate}) {
        CHECK(r->u64_or("errors", 1) == 0);
        CHECK(r->u64_or("bytes_received", 0) == r->u64_or("bytes_sent", 1));
      }
      CHECK(rate.u64_or("connections", 0) == 300);  // --count: the burst stops at 300
      auto idle =
          run_load({"--target", server.target, "--mode", "idle", "--connections", "50", "--hold",
                    "0.2", "--server-pid", std::to_string(server.pid()), "--json"});
      CHECK(idle.u64_or("alive", 0) == 50);
      // Memory per connection counts the children under fork (PSS over the process tree).
      if (std::string(env) == "TEXTBOOK_FORK_ECHO")
        CHECK(idle.number_or("rss_per_conn_bytes", 0) > 4096);
      auto summary = server.stop();
      std::uint64_t sent = 0, received = 0, connections = 0;
      for (const auto* r : {&echo, &big, &rate, &idle}) {
        sent += r->u64_or("bytes_sent", 0);
        received += r->u64_or("bytes_received", 0);
        connections += r->u64_or("connections", 0);
      }
      CHECK(summary["bytes_in"] == sent);
      CHECK(summary["bytes_out"] == received);
      CHECK(summary["connections"] == connections);
    }
  }

  TEST_CASE("reactor-load echo --idle holds proven connections through the run") {
    EchoServer server;
    auto echo =
        run_load({"--target", server.target, "--mode", "echo", "--duration", "0.5", "--connections",
                  "4", "--idle", "500", "--server-pid", std::to_string(server.pid()), "--json"});
    CHECK(echo.u64_or("errors", 1) == 0);
    CHECK(echo.u64_or("idle", 0) == 500);
    CHECK(echo.u64_or("idle_ready", 0) == 500);
    CHECK(echo.u64_or("msgs", 0) > 0);
    CHECK(echo.number_or("server_cpu_s", -1) >= 0);
    auto summary = server.stop();
    CHECK(summary["connections"] == 504);
    CHECK(summary["bytes_in"] == echo.u64_or("bytes_sent", 1));
  }

  TEST_CASE("reactor-load's counters match reactor-server's own summary under every model") {
    for (const auto& info : reactor::models()) {
      const std::string model(info.name);
      CAPTURE(model);
      EchoServer server({binary("REACTOR_SERVER"), "--protocol", "echo", "--model", model,
                         "--listen", "tcp://127.0.0.1:0"});
      auto echo = run_load({"--target", server.target, "--mode", "echo", "--duration", "0.5",
                            "--connections", "8", "--json"});
      auto rate = run_load({"--target", server.target, "--mode", "connrate", "--duration", "0.5",
                            "--concurrency", "4", "--json"});
      CHECK(echo.u64_or("errors", 1) == 0);
      CHECK(rate.u64_or("errors", 1) == 0);
      auto summary = server.stop();
      std::uint64_t sent = echo.u64_or("bytes_sent", 0) + rate.u64_or("bytes_sent", 0);
      CHECK(sent > 0);
      CHECK(summary["bytes_in"] == sent);
      CHECK(summary["bytes_out"] ==
            echo.u64_or("bytes_received", 0) + rate.u64_or("bytes_received", 0));
      CHECK(summary["connections"] ==
            echo.u64_or("connections", 0) + rate.u64_or("connections", 0));
    }
  }

  TEST_CASE("reactor-bench --quick runs every model end to end and writes its results folder") {
    // Figures are not asserted (a shared machine); the run, the rows and the files are.
    std::string dir = temp_dir() + "/results";
    auto began = std::chrono::steady_clock::now();
    RunResult r =
        run({binary("REACTOR_BENCH"), "--quick", "--out", dir, "--server", binary("REACTOR_SERVER"),
             "--baseline", binary("TEXTBOOK_ECHO"), "--load", binary("REACTOR_LOAD")},
            std::chrono::milliseconds(240'000));
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    INFO("stdout: ", r.out, "\nstderr: ", r.err);
    CHECK(WEXITSTATUS(r.status) == 0);
    CHECK(took < 60);  // --quick: under a minute in all
    CHECK(r.out.find("results: " + dir) != std::string::npos);
    CHECK(r.out.find("fork / textbook fork") != std::string::npos);
    CHECK(r.out.find("thread / textbook thread") != std::string::npos);
    CHECK(r.err.find(" left") != std::string::npos);  // progress lines with the time left
    auto results = load::JsonValue::parse(slurp(dir + "/results.json"));
    REQUIRE(results);
    const auto* rows = results->find("rows");
    REQUIRE(rows);
    std::vector<std::string> models;
    for (const auto& row : rows->items()) {
      std::string model = row.find("model")->as_string();
      CAPTURE(model);
      models.push_back(model);
      CHECK(row.find("status")->as_string() == "ok");
      CHECK(row.u64_or("errors", 1) == 0);
      CHECK(row.number_or("us_per_conn", -1) > 0);
      CHECK(row.number_or("us_per_msg", -1) > 0);
      for (const char* phase : {"connrate_c16", "connrate_c64", "echo", "idle_memory"}) {
        CAPTURE(phase);
        const auto* p = row.find(phase);
        REQUIRE(p);
        const auto* samples = p->find("samples");
        REQUIRE(samples);
        REQUIRE(samples->items().size() == 1);
        if (std::string(phase) != "idle_memory") CHECK(p->number_or("median", 0) > 0);
        CHECK(samples->items()[0].find("note")->as_string() == "");
        CHECK(samples->items()[0].find("load")->is_object());
      }
    }
    // The default rows present in this tree (the optional ones only when the server lists them).
    CHECK(std::vector<std::string>(models.begin(), models.begin() + 7) == bench::kDefaultModels);
    const auto* pairs = results->find("ours_vs_textbook");
    REQUIRE(pairs);
    CHECK(pairs->items().size() == 3);
    std::string csv = slurp(dir + "/results.csv");
    CHECK(csv.rfind("model,status,phase,round,", 0) == 0);
    CHECK(csv.find("\nepoll,ok,echo,1,") != std::string::npos);
    CHECK(csv.find("\ntextbook fork,ok,connrate_c16,1,") != std::string::npos);
  }

  TEST_CASE("reactor-bench: every cell in R rounds, a refused model skipped with a note") {
    std::string dir = temp_dir() + "/results";
    RunResult r =
        run({binary("REACTOR_BENCH"), "--rounds", "2", "--duration", "0.3", "--models",
             "textbook-fork,no-such-model", "--out", dir, "--server", binary("REACTOR_SERVER"),
             "--baseline", binary("TEXTBOOK_ECHO"), "--load", binary("REACTOR_LOAD")},
            std::chrono::milliseconds(240'000));
    INFO("stdout: ", r.out, "\nstderr: ", r.err);
    CHECK(WEXITSTATUS(r.status) == 0);
    CHECK(r.out.find("note: no-such-model: refused by the server") != std::string::npos);
    CHECK(r.out.find("textbook fork after a burst of 2500 connections") != std::string::npos);
    auto results = load::JsonValue::parse(slurp(dir + "/results.json"));
    REQUIRE(results);
    CHECK(results->u64_or("rounds", 0) == 2);
    const auto& rows = results->find("rows")->items();
    REQUIRE(rows.size() == 2);
    CHECK(rows[1].find("status")->as_string() == "skipped");
    const auto& fork = rows[0];
    for (const char* phase : {"connrate_c1", "connrate_c16", "connrate_c64", "echo",
                              "connrate_c16_after_burst", "idle_memory"}) {
      CAPTURE(phase);
      const auto* p = fork.find(phase);
      REQUIRE(p);
      const auto& samples = p->find("samples")->items();
      REQUIRE(samples.size() == 2);
      CHECK(samples[0].u64_or("round", 0) == 1);
      CHECK(samples[1].u64_or("round", 0) == 2);
      CHECK(p->number_or("min", -1) <= p->number_or("median", -2));
      CHECK(p->number_or("median", -1) <= p->number_or("max", -2));
    }
    CHECK(fork.u64_or("errors", 1) == 0);
  }
}

// tools/cluster/cluster.sh with the real programs: redis-server, three reactor-server --hub
// instances and HAProxy. Clients through HAProxy land on different instances and share a room;
// an instance killed with SIGKILL loses its clients, who reconnect through HAProxy and rejoin;
// Redis restarted, chat resumes.
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/un.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "support/process.hpp"
#include "support/redis_server.hpp"

using namespace std::chrono_literals;

namespace {

const std::string kScript = CLUSTER_SCRIPT_PATH;
const std::string kServer = REACTOR_SERVER_PATH;
const std::string kBack = "* chat backend back";

// A started cluster; the destructor stops it and removes its directory.
class Cluster {
 public:
  Cluster() {
    ::setenv("REACTOR_SERVER", kServer.c_str(), 1);
    ::setenv("TTL", "1", 1);
    auto p = test::run_to_exit("/bin/bash", {kScript, "start"}, 60s);
    REQUIRE_MESSAGE(p.exit_code() == 0, "cluster.sh start: " << p.err());
    const auto lines = test::lines_of(p.out());
    REQUIRE(!lines.empty());
    dir_ = lines.back();
    std::ifstream env(dir_ + "/cluster.env");
    for (std::string line; std::getline(env, line);) {
      const auto eq = line.find('=');
      if (eq != std::string::npos) env_[line.substr(0, eq)] = line.substr(eq + 1);
    }
    REQUIRE(env_.count("HAPROXY_PORT") == 1);
  }
  ~Cluster() {
    test::Process p("/bin/bash", {kScript, "stop", dir_});
    p.wait_exit(60s);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  reactor::Address front() const {
    return test::parse("tcp://127.0.0.1:" + env_.at("HAPROXY_PORT"));
  }
  void run(const std::vector<std::string>& args) {
    std::vector<std::string> all{kScript};
    all.insert(all.end(), args.begin(), args.end());
    auto p = test::run_to_exit("/bin/bash", all, 60s);
    REQUIRE_MESSAGE(p.exit_code() == 0, "cluster.sh " << args.at(0) << ": " << p.err());
  }
  const std::string& dir() const { return dir_; }

  // HAProxy's "show stat": server name -> current sessions.
  std::map<std::string, int> sessions() const {
    reactor::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    const std::string path = env_.at("HAPROXY_SOCKET");
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    test::send_all(fd.get(), "show stat\n");
    std::string out;
    char chunk[4096];
    for (ssize_t n; (n = ::recv(fd.get(), chunk, sizeof chunk, 0)) > 0;) out.append(chunk, n);
    std::map<std::string, int> result;
    for (const auto& line : test::lines_of(out)) {
      if (!line.starts_with("chats,s")) continue;
      const auto name_end = line.find(',', 6);
      std::size_t field = name_end;  // fields: pxname,svname,qcur,qmax,scur
      for (int i = 0; i < 2; ++i) field = line.find(',', field + 1);
      result[line.substr(6, name_end - 6)] = std::atoi(line.c_str() + field + 1);
    }
    return result;
  }

 private:
  std::string dir_;
  std::map<std::string, std::string> env_;
};

std::unique_ptr<test::ChatClient> join_as(const reactor::Address& front, const std::string& nick) {
  auto client = std::make_unique<test::ChatClient>(front);
  CHECK(client->ask_past("/nick " + nick) == "OK nick " + nick + ", joined lobby");
  return client;
}

}  // namespace

TEST_CASE("clients through HAProxy land on different instances, chat in one room, survive") {
  Cluster cluster;
  std::vector<std::unique_ptr<test::ChatClient>> clients;
  for (const char* nick : {"ann", "ben", "cat"}) clients.push_back(join_as(cluster.front(), nick));
  // leastconn spreads three clients over three idle instances.
  const auto sessions = cluster.sessions();
  CHECK(sessions == std::map<std::string, int>{{"s1", 1}, {"s2", 1}, {"s3", 1}});

  clients[0]->send_line("hello all");
  CHECK(clients[1]->wait_for("ann: hello all"));
  CHECK(clients[2]->wait_for("ann: hello all"));

  SUBCASE("an instance killed with SIGKILL: its client reconnects through HAProxy and rejoins") {
    cluster.run({"kill-instance", cluster.dir(), "1"});
    // Whose instance was it? That client reads the end of its stream.
    int victim = -1;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (victim < 0 && std::chrono::steady_clock::now() < deadline) {
      for (int i = 0; i < 3 && victim < 0; ++i) {
        if (!clients[i]->read_line(200ms) && clients[i]->last_error() == "eof") victim = i;
      }
    }
    REQUIRE(victim >= 0);
    const std::string nick = std::vector<std::string>{"ann", "ben", "cat"}[victim];
    // Reconnect through HAProxy (redispatched away from the dead server); the old lease runs
    // out within the TTL, then the nick is ours again.
    // Retried until a deadline of several TTLs (3 s): an attempt takes milliseconds.
    std::unique_ptr<test::ChatClient> again;
    std::string reply;
    const auto lease_deadline = std::chrono::steady_clock::now() + 20s;
    while (reply != "OK nick " + nick + ", joined lobby" &&
           std::chrono::steady_clock::now() < lease_deadline) {
      again = std::make_unique<test::ChatClient>(cluster.front());
      reply = again->ask_past("/nick " + nick);
      if (reply.starts_with("ERR nick taken")) ::poll(nullptr, 0, 100);  // bounded by the deadline
    }
    REQUIRE(reply == "OK nick " + nick + ", joined lobby");
    const int witness = victim == 0 ? 1 : 0;
    CHECK(clients[witness]->wait_for("* " + nick + " joined"));
    again->send_line("I am back");
    CHECK(clients[witness]->wait_for(nick + ": I am back"));
  }

  SUBCASE("Redis restarted: everyone hears it is back and chat resumes") {
    cluster.run({"restart-redis", cluster.dir()});
    for (auto& client : clients) CHECK(client->wait_for(kBack, 20s));
    clients[2]->send_line("after the restart");
    CHECK(clients[0]->wait_for("cat: after the restart"));
    CHECK(clients[1]->wait_for("cat: after the restart"));
  }
}

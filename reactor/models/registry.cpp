#include "reactor/models/registry.hpp"

#include <algorithm>

#include "reactor/models/epoll.hpp"
#include "reactor/models/fork.hpp"
#include "reactor/models/prefork.hpp"
#include "reactor/models/reuseport.hpp"
#include "reactor/models/thread.hpp"
#include "reactor/models/threadpool.hpp"

namespace reactor {
namespace {

constexpr unsigned kStream = kTcp | kUnixStream;

constexpr ModelInfo kModels[] = {
    {"epoll", "one epoll loop on one thread (the product)", &make_epoll_model, kAllTransports,
     false, true, true, false},
    {"poll", "the same single-threaded reactor on poll(2)", &make_poll_model, kAllTransports, false,
     true, true, false},
    {"select", "the same reactor on select(2); descriptors >= 1024 are refused", &make_select_model,
     kAllTransports, false, true, true, false},
    {"reuseport", "N epoll loops, each with its own SO_REUSEPORT listener", &make_reuseport_model,
     kAllTransports, true, true, true, true},
    {"threadpool", "an acceptor hands connections to N threads, each with its own epoll loop",
     &make_threadpool_model, kStream, true, true, true, true},
    {"thread", "a thread per connection, blocking I/O", &make_thread_model, kStream, false, true,
     true, true},
    {"fork", "a process per connection, blocking I/O; chat through a relay in the parent",
     &make_fork_model, kStream, false, true, false, false},
    {"prefork", "N pre-forked processes, each an epoll loop on the shared listener",
     &make_prefork_model, kStream, true, false, false, false},
};

}  // namespace

std::span<const ModelInfo> models() noexcept {
  return kModels;
}

const ModelInfo* find_model(std::string_view name) noexcept {
  const auto* it = std::find_if(std::begin(kModels), std::end(kModels),
                                [name](const ModelInfo& m) { return m.name == name; });
  return it == std::end(kModels) ? nullptr : it;
}

std::string model_names(std::string_view separator) {
  std::string out;
  for (const auto& m : kModels) {
    if (!out.empty()) out += separator;
    out += m.name;
  }
  return out;
}

std::string model_refuses(const ModelInfo& model, bool uses_hub, bool shares_memory) {
  if (uses_hub && !model.serves_hub) {
    return "the " + std::string(model.name) +
           " model does not run protocols that use the hub (chat): its processes share no rooms";
  }
  if (shares_memory && !model.shares_memory) {
    return "the " + std::string(model.name) +
           " model does not run protocols that share memory between sessions (separate processes)";
  }
  return {};
}

}  // namespace reactor

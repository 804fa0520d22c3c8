#include "server_models.hpp"

#include "reactor/models/epoll.hpp"
#include "reactor/models/fork.hpp"
#include "reactor/models/reuseport.hpp"
#include "reactor/models/thread.hpp"

namespace reactor::tools {

std::unique_ptr<Model> make_model(std::string_view name, Protocol& protocol,
                                  const ModelOptions& options) {
  if (name == "epoll") return make_epoll_model(protocol, options);
  if (name == "reuseport") return make_reuseport_model(protocol, options);
  if (name == "thread") return make_thread_model(protocol, options);
  if (name == "fork") return make_fork_model(protocol, options);
  return nullptr;
}

}  // namespace reactor::tools

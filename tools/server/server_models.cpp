#include "server_models.hpp"

#include <cstdio>

#include "protocols/registry.hpp"
#include "reactor/models/registry.hpp"

namespace reactor::tools {

std::unique_ptr<Model> make_model(std::string_view name, Protocol& protocol,
                                  const ModelOptions& options) {
  const ModelInfo* info = find_model(name);
  return info == nullptr ? nullptr : info->create(protocol, options);
}

void print_models() {
  std::printf("%-11s %-26s %-7s %-4s %s\n", "NAME", "TRANSPORTS", "WORKERS", "HUB", "SUMMARY");
  for (const ModelInfo& m : models()) {
    std::printf("%-11.*s %-26s %-7s %-4s %.*s\n", static_cast<int>(m.name.size()), m.name.data(),
                protocols::transports_to_string(m.transports).c_str(),
                m.takes_workers ? "yes" : "no", m.serves_hub ? "yes" : "no",
                static_cast<int>(m.summary.size()), m.summary.data());
  }
}

}  // namespace reactor::tools

#include "server_hub.hpp"

namespace reactor::tools {

bool check_hub_url(std::string_view, std::string& error) {
  error = "--hub: this build has no Redis support (rebuild with libhiredis-dev)";
  return false;
}

std::unique_ptr<Model> make_hub_model(std::string_view, std::string_view, Protocol&,
                                      const ModelOptions&, std::string& error) {
  error = "--hub: this build has no Redis support (rebuild with libhiredis-dev)";
  return nullptr;
}

}  // namespace reactor::tools

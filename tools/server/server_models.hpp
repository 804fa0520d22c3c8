// The concurrency models reactor-server can run, by name (reactor/models/registry.hpp).
#pragma once

#include <memory>
#include <string_view>

#include "reactor/models/model.hpp"

namespace reactor::tools {

// Null if the model cannot be created (or the name is unknown: parse_server_args checks it).
std::unique_ptr<Model> make_model(std::string_view name, Protocol& protocol,
                                  const ModelOptions& options);

// The --list-models table: name, transports, --workers, hub, summary.
void print_models();

}  // namespace reactor::tools

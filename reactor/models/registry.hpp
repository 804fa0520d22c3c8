// The concurrency models, in one constexpr table (like the protocols' built-ins): reactor-server's
// --model and --list-models, its help text, the docs and the tests read it; nothing else lists
// model names.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "reactor/models/model.hpp"

namespace reactor {

using ModelFactory = std::unique_ptr<Model> (*)(Protocol&, const ModelOptions&);

struct ModelInfo {
  std::string_view name;
  std::string_view summary;  // one line
  ModelFactory create;       // null result: the model cannot start (no loop, no descriptors)
  unsigned transports;       // TransportMask bits it serves
  bool takes_workers;        // --workers N sets its number of loops/threads/processes
  bool serves_hub;           // protocols with uses_hub (chat) work under it
  bool shares_memory;        // sessions run in one address space (protocols with shares_memory)
  bool threaded;             // runs sessions on several threads (TSan covers it)
};

// Every model, the default (epoll) first.
std::span<const ModelInfo> models() noexcept;
const ModelInfo* find_model(std::string_view name) noexcept;
// "epoll, poll, select, ..." (for help text and error messages).
std::string model_names(std::string_view separator = ", ");

// Why `model` cannot serve a protocol described by `uses_hub` / `shares_memory`, or "" if it
// can: "the prefork model does not run protocols that use the hub (chat)".
std::string model_refuses(const ModelInfo& model, bool uses_hub, bool shares_memory);

}  // namespace reactor

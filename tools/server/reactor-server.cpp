// reactor-server: serves any protocol (built-in or plugin) under any concurrency model on any
// number of addresses. See --help.
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "cli.hpp"
#include "protocols/plugin_loader.hpp"
#include "protocols/registry.hpp"
#include "reactor/error.hpp"
#include "reactor/loop.hpp"
#include "reactor/models/epoll.hpp"
#include "reactor/models/model.hpp"
#include "reactor/models/stop_signals.hpp"
#include "reactor/models/registry.hpp"
#include "reactor/socket.hpp"
#include "server_args.hpp"
#include "server_hub.hpp"
#include "server_models.hpp"

namespace {

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "reactor-server: %s\n", message.c_str());
  return code;
}

void list_protocols(const reactor::protocols::Registry& registry) {
  std::printf("%-12s %-26s %-4s %s\n", "NAME", "TRANSPORTS", "HUB", "SUMMARY");
  for (const auto& entry : registry.list()) {
    std::printf("%-12.*s %-26s %-4s %.*s\n", static_cast<int>(entry.info.name.size()),
                entry.info.name.data(),
                reactor::protocols::transports_to_string(entry.info.transports).c_str(),
                entry.info.uses_hub ? "yes" : "no", static_cast<int>(entry.info.summary.size()),
                entry.info.summary.data());
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> words(argv + 1, argv + argc);
  if (reactor::tools::wants_version(words)) {
    std::printf("reactor-server %.*s\n", static_cast<int>(reactor::tools::kVersion.size()),
                reactor::tools::kVersion.data());
    return 0;
  }
  std::string error;
  auto args = reactor::tools::parse_server_args(words, error);
  if (!args) return fail(2, error);
  if (args->help) {
    std::fputs(reactor::tools::kServerUsage, stdout);
    std::fputs("\nModels:\n", stdout);
    reactor::tools::print_models();
    return 0;
  }
  if (args->list_models) {
    reactor::tools::print_models();
    return 0;
  }
  const reactor::ModelInfo& model_info = *reactor::find_model(args->model);

  reactor::protocols::Registry registry;
  for (const auto& path : args->plugins) {
    std::string detail;
    auto plugin = reactor::protocols::load_plugin(path, registry, &detail);
    if (!plugin) {
      std::string message = reactor::describe("--plugin " + path, plugin.error());
      // The detail starts with the file's name for callers that print it alone; ours names the
      // path already.
      for (const std::string& named : {path + ": ", "./" + path + ": "}) {
        if (detail.rfind(named, 0) == 0) detail.erase(0, named.size());
      }
      if (!detail.empty()) message += " (" + detail + ")";
      return fail(2, message);
    }
  }
  if (args->list_protocols) {
    list_protocols(registry);
    return 0;
  }

  const auto* entry = registry.find(args->protocol);
  if (entry == nullptr) {
    std::string known;
    for (const auto& e : registry.list())
      known += (known.empty() ? "" : ", ") + std::string(e.info.name);
    return fail(2, "unknown protocol '" + args->protocol + "' (known: " + known + ")");
  }

  if (entry->info.shares_memory && !model_info.shares_memory) {
    return fail(2, "protocol " + args->protocol + " needs shared memory: not available under --model " +
                       args->model);
  }

  std::vector<reactor::Address> addresses;
  for (const auto& url : args->listen) {
    auto address = reactor::Address::parse(url);
    if (!address) return fail(2, reactor::describe("--listen " + url, address.error()));
    if (!(entry->info.transports & reactor::mask_of(address->transport()))) {
      return fail(2, "--listen " + url + ": protocol '" + args->protocol + "' does not run over " +
                         std::string(reactor::scheme_of(address->transport())) + " (it runs over " +
                         reactor::protocols::transports_to_string(entry->info.transports) + ")");
    }
    if (!(model_info.transports & reactor::mask_of(address->transport()))) {
      std::string models;
      for (const auto& m : reactor::models()) {
        if (m.transports & reactor::mask_of(address->transport())) {
          models += (models.empty() ? "" : ", ") + std::string(m.name);
        }
      }
      return fail(
          2,
          "--listen " + url + ": " +
              (reactor::is_connection_oriented(address->transport()) ? "seqpacket" : "datagram") +
              " listeners run on these models only: " + models + " (not " + args->model + ")");
    }
    addresses.push_back(*address);
  }

  if (!args->hub.empty() && !reactor::tools::check_hub_url(args->hub, error)) {
    return fail(2, error);
  }
  if (auto why =
          reactor::model_refuses(model_info, entry->info.uses_hub, entry->info.shares_memory);
      !why.empty()) {
    return fail(2, "--protocol " + args->protocol + ": " + why);
  }

  auto protocol = entry->create(args->protocol_args, error);
  if (!protocol) return fail(2, "--protocol " + args->protocol + ": " + error);

  reactor::ignore_sigpipe();
  // Blocked from here on (and in every thread the models start), so a SIGINT/SIGTERM/SIGHUP that
  // arrives as soon as 'listening on' is printed waits for run()'s signalfd instead of killing
  // the process without its graceful stop and summary.
  if (auto ec = reactor::block_signals({REACTOR_STOP_SIGNALS})) {
    return fail(1, reactor::describe("block signals", ec));
  }
  reactor::set_log_level(args->log_level);
  reactor::ModelOptions options;
  options.idle_timeout = args->idle_timeout;
  options.max_connections = args->max_connections;
  options.shutdown_grace = args->shutdown_grace;
  options.workers = args->workers;
  options.announce_stop = true;
  options.uses_hub = entry->info.uses_hub || !args->hub.empty();
  auto model = args->hub.empty() ? reactor::tools::make_model(args->model, *protocol, options)
                                 : reactor::tools::make_hub_model(args->model, args->hub, *protocol,
                                                                  options, error);
  if (!model && !args->hub.empty()) return fail(1, error);
  if (!model) return fail(1, "cannot start the " + args->model + " model");

  for (std::size_t i = 0; i < addresses.size(); ++i) {
    auto bound = model->listen(addresses[i]);
    if (!bound) return fail(1, reactor::describe("listen " + args->listen[i], bound.error()));
    std::printf("listening on %s\n", bound->to_string().c_str());
  }
  std::fflush(stdout);

  if (auto ec = model->run()) return fail(1, reactor::describe("run", ec));
  auto s = model->stats();
  std::printf(
      "summary: connections=%llu bytes_in=%llu bytes_out=%llu failed=%llu rejected=%llu "
      "shed=%llu datagrams_in=%llu datagrams_out=%llu writes=%llu too_large=%llu\n",
      static_cast<unsigned long long>(s.accepted), static_cast<unsigned long long>(s.bytes_in),
      static_cast<unsigned long long>(s.bytes_out), static_cast<unsigned long long>(s.failed),
      static_cast<unsigned long long>(s.rejected), static_cast<unsigned long long>(s.shed),
      static_cast<unsigned long long>(s.datagrams_in),
      static_cast<unsigned long long>(s.datagrams_out), static_cast<unsigned long long>(s.writes),
      static_cast<unsigned long long>(s.datagrams_too_large + s.messages_too_large));
  std::fflush(stdout);
  model.reset();  // before the protocol it drives
  return 0;
}

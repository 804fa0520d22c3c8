#include "server_hub.hpp"

#include <thread>
#include <vector>

#include "reactor/loop.hpp"
#include "reactor/models/epoll.hpp"
#include "reactor/models/reuseport.hpp"
#include "reactor/redis/redis_hub.hpp"

namespace reactor::tools {
namespace {

// Owns the loops, the hub on each and the model using them, destroyed in that reverse order.
class HubModel final : public Model {
 public:
  HubModel(std::vector<std::unique_ptr<Loop>> loops,
           std::vector<std::unique_ptr<redis::RedisHub>> hubs, std::unique_ptr<Model> model)
      : loops_(std::move(loops)), hubs_(std::move(hubs)), model_(std::move(model)) {}
  Result<Address> listen(const Address& address) override { return model_->listen(address); }
  std::error_code run() override {
    const auto ec = model_->run();
    // The loops have stopped (their threads are gone): let the closed sessions' goodbyes
    // reach Redis.
    for (auto& hub : hubs_) hub->drain(std::chrono::seconds(1));
    return ec;
  }
  void request_stop() override { model_->request_stop(); }
  ServerStats stats() const override { return model_->stats(); }

 private:
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::unique_ptr<redis::RedisHub>> hubs_;
  std::unique_ptr<Model> model_;
};

}  // namespace

bool check_hub_url(std::string_view url, std::string& error) {
  redis::RedisHubOptions ignored;
  if (redis::parse_redis_url(url, ignored, error)) return true;
  error = "--hub: " + error;
  return false;
}

std::unique_ptr<Model> make_hub_model(std::string_view model_name, std::string_view url,
                                      Protocol& protocol, const ModelOptions& options,
                                      std::string& error) {
  redis::RedisHubOptions hub_options;
  if (!redis::parse_redis_url(url, hub_options, error)) {
    error = "--hub: " + error;
    return nullptr;
  }
  // reuseport: one hub per loop, each an instance of its own on Redis (local delivery stays
  // inside a loop; between loops lines go through Redis like between processes).
  unsigned count = 1;
  if (model_name == "reuseport") {
    count =
        options.workers != 0 ? options.workers : std::max(1u, std::thread::hardware_concurrency());
  }
  std::vector<std::unique_ptr<Loop>> loops;
  std::vector<std::unique_ptr<redis::RedisHub>> hubs;
  std::vector<Loop*> raw_loops;
  std::vector<Hub*> raw_hubs;
  for (unsigned i = 0; i < count; ++i) {
    auto loop = Loop::create();
    if (!loop) {
      error = "cannot create a loop";
      return nullptr;
    }
    auto hub = std::make_unique<redis::RedisHub>(**loop, hub_options);
    if (!hub->start(error)) {
      error = "--hub: " + error;
      return nullptr;
    }
    raw_loops.push_back(loop->get());
    raw_hubs.push_back(hub.get());
    loops.push_back(std::move(*loop));
    hubs.push_back(std::move(hub));
  }
  auto model = model_name == "reuseport"
                   ? make_reuseport_model(raw_loops, protocol, options, raw_hubs)
                   : make_epoll_model(*raw_loops[0], protocol, options, raw_hubs[0]);
  if (!model) {
    error = "cannot start the " + std::string(model_name) + " model";
    return nullptr;
  }
  return std::make_unique<HubModel>(std::move(loops), std::move(hubs), std::move(model));
}

}  // namespace reactor::tools

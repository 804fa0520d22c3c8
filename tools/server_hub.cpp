#include "server_hub.hpp"

#include "reactor/loop.hpp"
#include "reactor/models/epoll.hpp"
#include "reactor/redis/redis_hub.hpp"

namespace reactor::tools {
namespace {

// Owns the loop, the hub on it and the model using both, destroyed in that reverse order.
class HubModel final : public Model {
 public:
  HubModel(std::unique_ptr<Loop> loop, std::unique_ptr<redis::RedisHub> hub,
           std::unique_ptr<Model> model)
      : loop_(std::move(loop)), hub_(std::move(hub)), model_(std::move(model)) {}
  Result<Address> listen(const Address& address) override { return model_->listen(address); }
  std::error_code run() override {
    const auto ec = model_->run();
    hub_->drain(std::chrono::seconds(1));  // the closed sessions' goodbyes reach Redis
    return ec;
  }
  void request_stop() override { model_->request_stop(); }
  ServerStats stats() const override { return model_->stats(); }

 private:
  std::unique_ptr<Loop> loop_;
  std::unique_ptr<redis::RedisHub> hub_;
  std::unique_ptr<Model> model_;
};

}  // namespace


bool check_hub_url(std::string_view url, std::string& error) {
  redis::RedisHubOptions ignored;
  if (redis::parse_redis_url(url, ignored, error)) return true;
  error = "--hub: " + error;
  return false;
}

std::unique_ptr<Model> make_hub_model(std::string_view url, Protocol& protocol,
                                      const ModelOptions& options, std::string& error) {
  redis::RedisHubOptions hub_options;
  if (!redis::parse_redis_url(url, hub_options, error)) {
    error = "--hub: " + error;
    return nullptr;
  }
  auto loop = Loop::create();
  if (!loop) {
    error = "cannot create the loop";
    return nullptr;
  }
  auto hub = std::make_unique<redis::RedisHub>(**loop, std::move(hub_options));
  if (!hub->start(error)) {
    error = "--hub: " + error;
    return nullptr;
  }
  auto model = make_epoll_model(**loop, protocol, options, hub.get());
  if (!model) {
    error = "cannot start the epoll model";
    return nullptr;
  }
  return std::make_unique<HubModel>(std::move(*loop), std::move(hub), std::move(model));
}

}  // namespace reactor::tools

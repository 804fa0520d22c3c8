// reactor-server --hub: the epoll or reuseport model with a Hub shared between servers
// (RedisHub), built when reactor-redis is (see reactor/redis/meson.build).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "reactor/models/model.hpp"

namespace reactor::tools {

// Checks a --hub URL without connecting; false with one line in `error` (then exit 2).
bool check_hub_url(std::string_view url, std::string& error);

// Connects to the hub at `url` (redis://HOST:PORT[?ttl=SECONDS]) and returns the model
// ("epoll" or "reuseport") whose sessions use it; nullptr with one line in `error` (a bad URL
// or Redis unreachable).
std::unique_ptr<Model> make_hub_model(std::string_view model, std::string_view url,
                                      Protocol& protocol, const ModelOptions& options,
                                      std::string& error);

}  // namespace reactor::tools

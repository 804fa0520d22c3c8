// The fork and thread parents' listen(): a TCP or UNIX stream listener, watched on the parent's
// loop by the model's own Listener (an Acceptor and what to do with each connection).
#pragma once

#include <memory>
#include <vector>

#include "reactor/address.hpp"
#include "reactor/result.hpp"
#include "reactor/socket.hpp"

namespace reactor {

// `Listener(owner, fd, transport)` must start nothing; its `acceptor` is started here.
template <class Listener, class Owner>
Result<Address> add_stream_listener(Owner& owner, std::vector<std::unique_ptr<Listener>>& listeners,
                                    const Address& address) {
  auto listening = listen_stream(address);
  if (!listening) return listening.error();
  auto listener = std::make_unique<Listener>(owner, std::move(listening->fd), address.transport());
  if (auto ec = listener->acceptor.start()) return ec;
  listeners.push_back(std::move(listener));
  return std::move(listening->bound);
}

}  // namespace reactor

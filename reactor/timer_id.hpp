// TimerId: names one armed timer (the loop's, or a session's through its Peer).
#pragma once

#include <cstdint>

namespace reactor {

using TimerId = std::uint64_t;  // slot index (low 32) | generation (high 32); 0 = none
constexpr TimerId kNoTimer = 0;

}  // namespace reactor

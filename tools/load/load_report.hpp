// reactor-load's output: the one JSON object (--json) or the human summary, built from the
// options and the totals. Pure, so the field names are unit-tested.
#pragma once

#include <string>

#include "load_engine.hpp"
#include "load_options.hpp"

namespace load {

// One line, no trailing newline. Field names are the tool's interface: see load_usage().
std::string report_json(const LoadOptions& options, const LoadTotals& totals);
// A few aligned lines, newline-terminated.
std::string report_text(const LoadOptions& options, const LoadTotals& totals);
// "ECONNREFUSED", "EMFILE"... (or "errno N").
std::string errno_name(int errno_value);
// "ECONNREFUSED (Connection refused): 3, EMFILE (Too many open files): 1", or "".
std::string connect_causes(const LoadTotals& totals);

}  // namespace load

// Request target to file path: the security boundary before the file system sees anything.
#pragma once

#include <string>
#include <string_view>

namespace reactor::http {

struct DecodedTarget {
  int status = 0;          // 0: `path` is usable; else 400 (malformed) or 404 (refused)
  std::string path;        // "/a b/c.html": decoded, '/'-separated, no "." / ".." / empty segments
  std::string_view raw;    // the path part of the target as sent (no query), for redirects
  std::string_view query;  // "?q=1" or empty
};

// Accepts origin-form ("/a%20b?q") and absolute-form ("http://host/a") targets. Refuses (404)
// any ".." segment, and NUL or a backslash anywhere, raw or percent-encoded (%2e%2e, %00, %5c);
// malformed percent-escapes are 400. "." and empty segments are dropped; a trailing '/' is kept.
DecodedTarget decode_target(std::string_view target);

}  // namespace reactor::http

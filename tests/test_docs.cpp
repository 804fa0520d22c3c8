// The documentation's programs are real: docs/embedding.md shows the code of
// docs/examples/embedding.cpp (which the build compiles against the library), and that program
// runs: it serves, connects to itself, gets its answer and stops.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "support/process.hpp"

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// What lies between the lines holding `open` and `close` (exclusive).
std::string between(const std::string& text, const std::string& open, const std::string& close) {
  const auto start = text.find(open);
  REQUIRE_MESSAGE(start != std::string::npos, open);
  const auto body = text.find('\n', start) + 1;
  const auto end = text.find(close, body);
  REQUIRE_MESSAGE(end != std::string::npos, close);
  return text.substr(body, text.rfind('\n', end) + 1 - body);
}

}  // namespace

TEST_CASE("docs/embedding.md shows docs/examples/embedding.cpp as it is built") {
  const std::string root = SOURCE_ROOT;
  const std::string page = read_file(root + "/docs/embedding.md");
  const std::string source = read_file(root + "/docs/examples/embedding.cpp");
  const std::string shown = between(page, "```cpp", "```");
  const std::string built = between(source, "// [embedding]", "// [/embedding]");
  CHECK(shown == built);
}

TEST_CASE("the embedding example serves, connects to itself, prints the answer and exits 0") {
  test::Process program = test::run_to_exit(EMBEDDING_EXAMPLE_PATH, {}, std::chrono::seconds(20));
  CHECK_MESSAGE(program.exit_code() == 0, program.err());
  CHECK(program.out() == "HELLO, REACTOR\n");
  CHECK(program.err() == "");
}

#include <doctest/doctest.h>
#include <link.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "support/fake_peer.hpp"
#include "protocols/plugin_loader.hpp"
#include "reactor/local_hub.hpp"
#include "reactor/plugin.hpp"

using reactor::protocols::load_plugin;
using reactor::protocols::PluginErrc;
using reactor::protocols::Registry;

namespace {

// Loads a plugin that must fail and returns the error; `detail` receives the specifics.
std::error_code load_error(const std::string& path, std::string& detail) {
  Registry registry;
  const std::size_t before = registry.list().size();
  auto loaded = load_plugin(path, registry, &detail);
  CHECK_FALSE(loaded.ok());
  CHECK(registry.list().size() == before);
  return loaded.error();
}

// Writes the first `size` bytes of `source` (all of them if `whole`) to a new file and returns
// its path.
std::string truncated_copy(const std::string& source, std::size_t size, bool whole = false) {
  std::ifstream in(source, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (whole) size = bytes.size();
  REQUIRE(bytes.size() >= size);
  const std::string path = "/tmp/reactor-test-" + std::to_string(::getpid()) + "-truncated-" +
                           std::to_string(size) + ".so";
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(size));
  return path;
}

// Where the last loadable segment of an ELF file ends: every shorter copy is truncated.
std::size_t loadable_end(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ElfW(Ehdr) header{};
  in.read(reinterpret_cast<char*>(&header), sizeof header);
  std::size_t end = 0;
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    ElfW(Phdr) segment{};
    in.seekg(static_cast<std::streamoff>(header.e_phoff + i * sizeof segment));
    in.read(reinterpret_cast<char*>(&segment), sizeof segment);
    if (segment.p_type == PT_LOAD)
      end = std::max<std::size_t>(end, segment.p_offset + segment.p_filesz);
  }
  REQUIRE(in.good());
  return end;
}

}  // namespace

TEST_CASE("a truncated shared object is truncated, refused before dlopen maps it") {
  // dlopen of such a file dies of SIGBUS (it maps segments past the end of the file).
  const std::size_t end = loadable_end(KV_PLUGIN_PATH);
  REQUIRE(end > 3000);
  for (const std::size_t size : {std::size_t{20}, std::size_t{63}, std::size_t{64},
                                 std::size_t{1000}, std::size_t{3000}, end / 2, end - 1}) {
    CAPTURE(size);
    const std::string path = truncated_copy(KV_PLUGIN_PATH, size);
    std::string detail;
    CHECK(load_error(path, detail) == PluginErrc::truncated);
    CHECK_MESSAGE(
        detail.find("the file has " + std::to_string(size) + " bytes") != std::string::npos,
        detail);
    ::unlink(path.c_str());
  }
}

TEST_CASE("the example kv plugin loads and registers its protocol") {
  Registry registry;
  std::string detail;
  auto loaded = load_plugin(KV_PLUGIN_PATH, registry, &detail);
  REQUIRE_MESSAGE(loaded.ok(), loaded.error().message(), ": ", detail);
  CHECK(loaded->info.name == "kv");
  CHECK(loaded->info.transports == (reactor::kTcp | reactor::kUnixStream));
  CHECK_FALSE(loaded->info.uses_hub);
  CHECK(loaded->path == KV_PLUGIN_PATH);

  const auto* entry = registry.find("kv");
  REQUIRE(entry != nullptr);
  CHECK(entry->info.summary == loaded->info.summary);
  CHECK(registry.list().back().info.name == "kv");
}

TEST_CASE("a kv protocol from the plugin answers through a FakePeer") {
  Registry registry;
  REQUIRE(load_plugin(KV_PLUGIN_PATH, registry).ok());
  std::string error;
  auto kv = registry.create("kv", "", error);
  REQUIRE_MESSAGE(kv != nullptr, error);

  reactor::LocalHub hub;
  test::FakeConnection alice(*kv, hub);
  test::FakeConnection bob(*kv, hub);
  alice.feed("SET colour deep blue\r\nGET col");
  CHECK(alice.unconsumed() == 7);
  alice.feed("our\nGET nothing\n");
  CHECK(alice.peer.take() == "OK\nOK deep blue\nERR no such key\n");

  bob.feed("GET colour\nDEL colour\nDEL colour\nGET colour\nFLY away\nGET\n");
  CHECK(bob.peer.take_lines() ==
        std::vector<std::string>{"OK deep blue", "OK", "ERR no such key", "ERR no such key",
                                 "ERR usage: SET key value | GET key | DEL key",
                                 "ERR usage: SET key value | GET key | DEL key"});
}

TEST_CASE("plugin args reach the plugin; its refusal comes back as the error") {
  Registry registry;
  REQUIRE(load_plugin(KV_PLUGIN_PATH, registry).ok());
  REQUIRE(load_plugin(PREFIX_PLUGIN_PATH, registry).ok());
  std::string error;
  CHECK(registry.create("kv", "size=10", error) == nullptr);
  CHECK(error == "this protocol takes no arguments");  // the caller names the protocol

  error.clear();
  CHECK(registry.create("prefix", "", error) == nullptr);
  CHECK(error == "needs the prefix as its argument");

  error.clear();
  auto prefix = registry.create("prefix", "> ", error);
  REQUIRE_MESSAGE(prefix != nullptr, error);
  CHECK(prefix->max_outbox() == 12345);
  reactor::LocalHub hub;
  test::FakeConnection connection(*prefix, hub);
  connection.feed("hi");
  CHECK(connection.peer.take() == "> hi");
}

TEST_CASE("a plugin that starts its refusal with its own name has it said once") {
  Registry registry;
  REQUIRE(load_plugin(SELFNAMED_PLUGIN_PATH, registry).ok());
  std::string error;
  CHECK(registry.create("selfnamed", "", error) == nullptr);
  CHECK(error == "needs an argument");
  error.clear();
  CHECK(registry.create("selfnamed", "x", error) == nullptr);
  CHECK(error == "selfnamed:x is not a prefix");  // only "NAME: " is the plugin naming itself
}

TEST_CASE("a missing file is file_missing") {
  std::string detail;
  CHECK(load_error("/nonexistent/dir/libnothing.so", detail) == PluginErrc::file_missing);
  CHECK(detail.find("/nonexistent/dir/libnothing.so") != std::string::npos);

  CHECK(load_error("libnothing-here.so", detail) == PluginErrc::file_missing);
  CHECK(detail.find("./libnothing-here.so") != std::string::npos);
}

TEST_CASE("a text file or a directory is not_a_shared_object") {
  std::string detail;
  CHECK(load_error(NOT_A_PLUGIN_PATH, detail) == PluginErrc::not_a_shared_object);
  CHECK(load_error("/", detail) == PluginErrc::not_a_shared_object);
}

TEST_CASE("an ELF object dlopen refuses is load_failed, with dlerror's reason") {
  std::string detail;
  CHECK(load_error(UNRESOLVED_PLUGIN_PATH, detail) == PluginErrc::load_failed);
  CHECK(detail.find("reactor_test_symbol_nobody_defines") != std::string::npos);
}

TEST_CASE("a shared object without the entry point is entry_point_missing") {
  std::string detail;
  CHECK(load_error(NO_ENTRY_PLUGIN_PATH, detail) == PluginErrc::entry_point_missing);
  CHECK(detail.find("reactor_plugin_v1") != std::string::npos);
}

TEST_CASE("a plugin built for another ABI version is abi_mismatch") {
  std::string detail;
  CHECK(load_error(BAD_ABI_PLUGIN_PATH, detail) == PluginErrc::abi_mismatch);
  CHECK(detail.find("ABI 3, this server speaks 2") != std::string::npos);
}

TEST_CASE("a plugin named like a built-in or an earlier plugin from another file is name_taken") {
  std::string detail;
  CHECK(load_error(CLASH_PLUGIN_PATH, detail) == PluginErrc::name_taken);
  CHECK(detail.find("'echo'") != std::string::npos);

  // A copy is another file (another inode) with the same protocol name.
  const std::string copy = truncated_copy(KV_PLUGIN_PATH, 0, /*whole=*/true);
  Registry registry;
  REQUIRE(load_plugin(KV_PLUGIN_PATH, registry).ok());
  const std::size_t loaded = registry.list().size();
  auto again = load_plugin(copy, registry, &detail);
  CHECK(again.error() == PluginErrc::name_taken);
  CHECK(registry.list().size() == loaded);
  std::string error;
  CHECK(registry.create("kv", "", error) != nullptr);
  ::unlink(copy.c_str());
}

TEST_CASE("the same file loaded twice, by any path, is already_loaded") {
  const std::string path = KV_PLUGIN_PATH;
  const std::string dir = path.substr(0, path.rfind('/'));
  const std::string link = "/tmp/reactor-test-" + std::to_string(::getpid()) + "-kv-link.so";
  REQUIRE(::symlink(path.c_str(), link.c_str()) == 0);
  for (const std::string& other : {path, dir + "/./" + path.substr(path.rfind('/') + 1), link}) {
    CAPTURE(other);
    Registry registry;
    REQUIRE(load_plugin(path, registry).ok());
    const std::size_t loaded = registry.list().size();
    std::string detail;
    auto again = load_plugin(other, registry, &detail);
    CHECK(again.error() == PluginErrc::already_loaded);
    CHECK(detail.find("already loaded, as protocol 'kv'") != std::string::npos);
    CHECK(registry.list().size() == loaded);
  }
  ::unlink(link.c_str());
}

TEST_CASE(
    "plugin metadata: no transports or a summary with control characters is bad_plugin_info") {
  std::string detail;
  CHECK(load_error(NO_TRANSPORTS_PLUGIN_PATH, detail) == PluginErrc::bad_plugin_info);
  CHECK(detail.find("transports = 0") != std::string::npos);
  CHECK(load_error(BAD_SUMMARY_PLUGIN_PATH, detail) == PluginErrc::bad_plugin_info);
  CHECK(detail.find("summary") != std::string::npos);
}

TEST_CASE("every load error has its own message under the plugin category") {
  std::set<std::string> messages;
  for (int code = 1; code <= static_cast<int>(PluginErrc::already_loaded); ++code) {
    const std::error_code ec = static_cast<PluginErrc>(code);
    CHECK(ec.category().name() == std::string("plugin"));
    messages.insert(ec.message());
  }
  CHECK(messages.size() == static_cast<std::size_t>(PluginErrc::already_loaded));
  CHECK(reactor::describe("--plugin x.so", PluginErrc::file_missing) ==
        "--plugin x.so: plugin file not found");
}

TEST_CASE("REACTOR_PLUGIN's create catches, copies and truncates errors") {
  struct Picky final : reactor::Protocol {
    explicit Picky(std::string_view) { throw std::runtime_error("a rather long complaint"); }
    std::unique_ptr<reactor::Session> open(reactor::Hub&) override { return nullptr; }
  };
  constexpr auto info = reactor::make_plugin_info<Picky>("picky", "", reactor::kTcp, false);
  char error[8] = "xxxxxxx";
  CHECK(info.create("", error, sizeof error) == nullptr);
  CHECK(std::string(error) == "a rathe");
  CHECK(info.create(nullptr, nullptr, 0) == nullptr);
}

#include "protocols/plugin_loader.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "reactor/error.hpp"
#include "reactor/plugin.hpp"

namespace reactor::protocols {
namespace {

class PluginCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "plugin"; }
  std::string message(int code) const override {
    switch (static_cast<PluginErrc>(code)) {
      case PluginErrc::file_missing:
        return "plugin file not found";
      case PluginErrc::not_a_shared_object:
        return "not a shared object";
      case PluginErrc::load_failed:
        return "cannot load the shared object";
      case PluginErrc::entry_point_missing:
        return "not a reactor plugin (no reactor_plugin_v1 entry point)";
      case PluginErrc::abi_mismatch:
        return "plugin built for another reactor plugin ABI version";
      case PluginErrc::bad_plugin_info:
        return "plugin info is invalid (null, bad name, or no create/destroy)";
      case PluginErrc::name_taken:
        return "plugin's protocol name is taken by a built-in or an earlier plugin";
    }
    return "unknown plugin error";
  }
};

// A dlopen handle, closed unless released.
class Library {
 public:
  explicit Library(void* handle) noexcept : handle_(handle) {}
  ~Library() {
    if (handle_ != nullptr) ::dlclose(handle_);
  }
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;
  void* get() const noexcept { return handle_; }
  void release() noexcept { handle_ = nullptr; }

 private:
  void* handle_;
};

// Owns a Protocol made by a plugin and hands it back to the plugin's destroy().
class PluginProtocol final : public Protocol {
 public:
  PluginProtocol(const PluginInfo& plugin, Protocol* inner) noexcept
      : plugin_(plugin), inner_(inner) {}
  ~PluginProtocol() override { plugin_.destroy(inner_); }
  PluginProtocol(const PluginProtocol&) = delete;
  PluginProtocol& operator=(const PluginProtocol&) = delete;

  std::unique_ptr<Session> open(Hub& hub) override { return inner_->open(hub); }
  std::size_t max_outbox() const override { return inner_->max_outbox(); }
  std::size_t max_input() const override { return inner_->max_input(); }
  std::string last_words(std::error_code reason) const override {
    return inner_->last_words(reason);
  }

 private:
  const PluginInfo& plugin_;
  Protocol* inner_;
};

std::unique_ptr<Protocol> create_from_plugin(const void* context, std::string_view args,
                                             std::string& error) {
  const auto& plugin = *static_cast<const PluginInfo*>(context);
  const std::string args_z(args);
  char message[512] = "";
  Protocol* protocol = plugin.create(args_z.c_str(), message, sizeof message);
  if (protocol == nullptr) {
    message[sizeof message - 1] = '\0';
    error = plugin.name;
    error += ": ";
    error += message[0] != '\0' ? message : "could not create the protocol";
    return nullptr;
  }
  return std::make_unique<PluginProtocol>(plugin, protocol);
}

void set_detail(std::string* detail, std::string_view text) {
  if (detail != nullptr) detail->assign(text);
}

// Tells a missing file, a non-ELF file and an unreadable one apart before dlopen, whose
// messages do not.
std::error_code check_file(const std::string& path, std::string* detail) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int e = errno;
    set_detail(detail, path + ": " + std::strerror(e));
    return e == ENOENT || e == ENOTDIR ? make_error_code(PluginErrc::file_missing) : errno_code(e);
  }
  if (!S_ISREG(st.st_mode)) {
    set_detail(detail, path + ": not a regular file");
    return PluginErrc::not_a_shared_object;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    set_detail(detail, path + ": " + std::strerror(e));
    return errno_code(e);
  }
  constexpr char kElfMagic[4] = {0x7f, 'E', 'L', 'F'};
  char magic[4] = {};
  const ssize_t n = ::read(fd, magic, sizeof magic);
  ::close(fd);
  if (n != sizeof magic || std::memcmp(magic, kElfMagic, sizeof magic) != 0) {
    set_detail(detail, path + ": no ELF header");
    return PluginErrc::not_a_shared_object;
  }
  return {};
}

}  // namespace

const std::error_category& plugin_category() noexcept {
  static const PluginCategory category;
  return category;
}

Result<LoadedPlugin> load_plugin(std::string_view path, Registry& registry, std::string* detail) {
  std::string file(path);
  if (file.find('/') == std::string::npos) file.insert(0, "./");
  if (const std::error_code ec = check_file(file, detail)) return ec;

  ::dlerror();
  Library library(::dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (library.get() == nullptr) {
    const char* why = ::dlerror();
    set_detail(detail, why != nullptr ? why : file);
    return PluginErrc::load_failed;
  }
  const auto entry = reinterpret_cast<PluginEntryPoint>(::dlsym(library.get(), kPluginEntryPoint));
  if (entry == nullptr) {
    set_detail(detail, file + ": no symbol " + kPluginEntryPoint);
    return PluginErrc::entry_point_missing;
  }
  const PluginInfo* info = entry();
  if (info == nullptr) {
    set_detail(detail, file + ": reactor_plugin_v1() returned null");
    return PluginErrc::bad_plugin_info;
  }
  if (info->abi_version != kPluginAbiVersion) {
    set_detail(detail, file + ": built for plugin ABI " + std::to_string(info->abi_version) +
                           ", this server speaks " + std::to_string(kPluginAbiVersion));
    return PluginErrc::abi_mismatch;
  }
  if (info->name == nullptr || !is_valid_protocol_name(info->name) || info->create == nullptr ||
      info->destroy == nullptr) {
    set_detail(detail, file + ": needs a name of 1 to 32 of [A-Za-z0-9_-] and create/destroy");
    return PluginErrc::bad_plugin_info;
  }
  ProtocolEntry entry_for_registry{
      ProtocolInfo{info->name, info->summary != nullptr ? info->summary : "",
                   info->transports & kAllTransports, info->uses_hub,
                   info->shares_memory},
      &create_from_plugin, info};
  if (!registry.add(entry_for_registry)) {
    set_detail(detail, file + ": a protocol named '" + info->name + "' is already registered");
    return PluginErrc::name_taken;
  }
  library.release();
  set_detail(detail, {});
  return LoadedPlugin{file, entry_for_registry.info};
}

}  // namespace reactor::protocols

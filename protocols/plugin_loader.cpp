#include "protocols/plugin_loader.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
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
      case PluginErrc::truncated:
        return "shared object is truncated (its ELF headers or segments run past the end of the "
               "file)";
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
    // The caller names the protocol ("--protocol kv: ..."); a plugin that names itself too (as
    // the docs once advised: "kv: size=N needs a number") loses that prefix, so it is said once.
    std::string_view reason = message;
    const std::string own_prefix = std::string(plugin.name) + ": ";
    if (reason.starts_with(own_prefix)) reason.remove_prefix(own_prefix.size());
    error = reason.empty() ? "could not create the protocol" : std::string(reason);
    return nullptr;
  }
  return std::make_unique<PluginProtocol>(plugin, protocol);
}

void set_detail(std::string* detail, std::string_view text) {
  if (detail != nullptr) detail->assign(text);
}

// Reads exactly `size` bytes at `offset`; false on a short read or an error.
bool read_at(int fd, std::uint64_t offset, void* out, std::size_t size) {
  auto* p = static_cast<char*>(out);
  while (size > 0) {
    const ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    offset += static_cast<std::uint64_t>(n);
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// dlopen maps every PT_LOAD segment of the file; touching a page past its end raises SIGBUS in
// the dynamic linker. So the program headers and each segment's file bytes must lie inside the
// file. Only the native class and byte order are checked: dlopen refuses others before mapping.
template <class Ehdr, class Phdr>
std::error_code check_segments(int fd, std::uint64_t file_size, const std::string& path,
                               std::string* detail) {
  const auto truncated = [&](const std::string& what) {
    set_detail(detail,
               path + ": " + what + ", the file has " + std::to_string(file_size) + " bytes");
    return make_error_code(PluginErrc::truncated);
  };
  Ehdr header{};
  if (file_size < sizeof header || !read_at(fd, 0, &header, sizeof header)) {
    return truncated("the ELF header needs " + std::to_string(sizeof header) + " bytes");
  }
  if (header.e_phnum == 0) return {};  // dlopen refuses it with its own message
  if (header.e_phentsize != sizeof(Phdr)) {
    set_detail(detail, path + ": unexpected ELF program header size");
    return PluginErrc::not_a_shared_object;
  }
  const std::uint64_t table_end =
      std::uint64_t{header.e_phoff} + std::uint64_t{header.e_phnum} * sizeof(Phdr);
  if (header.e_phoff > file_size || table_end > file_size) {
    return truncated("the program headers end at byte " + std::to_string(table_end));
  }
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    Phdr segment{};
    if (!read_at(fd, header.e_phoff + std::uint64_t{i} * sizeof(Phdr), &segment, sizeof segment)) {
      return truncated("program header " + std::to_string(i) + " cannot be read");
    }
    if (segment.p_type != PT_LOAD) continue;
    const std::uint64_t end = std::uint64_t{segment.p_offset} + segment.p_filesz;
    if (segment.p_offset > file_size || segment.p_filesz > file_size || end > file_size) {
      return truncated("loadable segment " + std::to_string(i) + " ends at byte " +
                       std::to_string(end));
    }
  }
  return {};
}

// Tells a missing file, a non-ELF file, a truncated one and an unreadable one apart before
// dlopen, whose messages do not (and which dies of SIGBUS on a truncated object).
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
  constexpr unsigned char kElfMagic[4] = {0x7f, 'E', 'L', 'F'};
  unsigned char ident[EI_NIDENT] = {};
  const bool has_magic =
      read_at(fd, 0, ident, 4) && std::memcmp(ident, kElfMagic, sizeof kElfMagic) == 0;
  std::error_code ec;
  if (!has_magic) {
    set_detail(detail, path + ": no ELF header");
    ec = PluginErrc::not_a_shared_object;
  } else if (!read_at(fd, 0, ident, sizeof ident)) {
    set_detail(detail, path + ": the ELF header needs " + std::to_string(sizeof(ElfW(Ehdr))) +
                           " bytes, the file has " + std::to_string(st.st_size) + " bytes");
    ec = PluginErrc::truncated;
  } else {
    constexpr unsigned char kNativeClass = sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32;
    constexpr unsigned char kNativeData =
        __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB;
    if (ident[EI_CLASS] == kNativeClass && ident[EI_DATA] == kNativeData) {
      ec = check_segments<ElfW(Ehdr), ElfW(Phdr)>(fd, static_cast<std::uint64_t>(st.st_size), path,
                                                  detail);
    }
  }
  ::close(fd);
  return ec;
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
                   info->transports & kAllTransports, info->uses_hub, info->shares_memory},
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

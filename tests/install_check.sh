#!/usr/bin/env bash
# Installs the library into a scratch prefix and builds a program and a plugin against it using
# only the generated pkg-config file, the way another project would.
set -euo pipefail
build=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
meson install -C "$build" --destdir "$scratch" --quiet --no-rebuild >/dev/null
pc=$(find "$scratch" -name reactor.pc | head -n1)
[ -n "$pc" ] || { echo "reactor.pc was not installed"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
prefix=$scratch$(pkg-config --variable=prefix reactor)  # the same prefix, under the destdir
pc_flags() { pkg-config --define-variable=prefix="$prefix" "$@" reactor; }
flags=$(pc_flags --cflags --libs)
cat > "$scratch/app.cpp" <<'CPP'
#include <reactor/address.hpp>
#include <reactor/session.hpp>
#include <cstdio>
int main() {
  auto a = reactor::Address::parse_numeric("tcp://[::1]:7");
  std::puts(a ? a->to_string().c_str() : "error");
  return a ? 0 : 1;
}
CPP
c++ -std=c++20 "$scratch/app.cpp" -o "$scratch/app" $flags
out=$(LD_LIBRARY_PATH=$(pc_flags --variable=libdir) "$scratch/app")
[ "$out" = "tcp://[::1]:7" ] || { echo "unexpected output: $out"; exit 1; }
# A plugin needs only the headers.
c++ -std=c++20 -shared -fPIC "$(dirname "$0")/../protocols/examples/kv.cpp" -o "$scratch/libkv.so" \
  $(pc_flags --cflags)
# The installed tools run as installed: they find libreactor.so through their install rpath,
# with no LD_LIBRARY_PATH; the installed server loads the plugin built against the headers.
bindir=$prefix/$(meson introspect "$build" --buildoptions |
  python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "bindir"))')
for tool in reactor-server reactor-load reactor-bench; do
  [ -x "$bindir/$tool" ] || { echo "$tool was not installed in $bindir"; exit 1; }
  env -u LD_LIBRARY_PATH "$bindir/$tool" --help >/dev/null ||
    { echo "installed $tool --help failed"; exit 1; }
  version=$(env -u LD_LIBRARY_PATH "$bindir/$tool" --version)
  [ "$version" = "$tool $(pkg-config --modversion reactor)" ] ||
    { echo "installed $tool --version printed '$version'"; exit 1; }
done
listed=$(cd "$scratch" && env -u LD_LIBRARY_PATH "$bindir/reactor-server" --plugin ./libkv.so --list-protocols)
grep -q '^kv ' <<<"$listed" || { echo "installed reactor-server did not list the kv plugin: $listed"; exit 1; }
# The loader program in docs/writing-a-plugin.md ("From C++") builds against the installed
# headers alone and loads the plugin.
docs=$(dirname "$0")/../docs/writing-a-plugin.md
awk '/^From C\+\+/ { found = 1 } found && /^```cpp$/ { inside = 1; next }
     inside && /^```$/ { exit } inside { print }' "$docs" > "$scratch/loader.cpp"
[ -s "$scratch/loader.cpp" ] || { echo "no 'From C++' program in $docs"; exit 1; }
c++ -std=c++20 "$scratch/loader.cpp" -o "$scratch/loader" $(pc_flags --cflags) -ldl ||
  { echo "the docs' loader program does not build against the installed headers"; exit 1; }
loaded=$("$scratch/loader" "$scratch/libkv.so")
[ "${loaded%%:*}" = "loaded kv" ] || { echo "the docs' loader program printed: $loaded"; exit 1; }
echo "installed library, pkg-config file, headers and tools work: $out"

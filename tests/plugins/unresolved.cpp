// An ELF shared object dlopen(RTLD_NOW) refuses: it needs a symbol nothing defines.
extern "C" int reactor_test_symbol_nobody_defines();
extern "C" int reactor_test_call_it() {
  return reactor_test_symbol_nobody_defines();
}

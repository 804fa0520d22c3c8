// A valid shared object that is not a reactor plugin: it exports no reactor_plugin_v1.
extern "C" int reactor_test_not_a_plugin() {
  return 42;
}

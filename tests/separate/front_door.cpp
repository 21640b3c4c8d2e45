// One call wrapped through the front door, compiled twice as an object (tests/CMakeLists.txt):
// header-only and under FAILOVER_SEPARATE_COMPILATION. check_symbols.cmake reads both.
#include <failover/fallback_chain.hpp>

#include <string>

int main() {
  failover::fallback_chain<std::string(const std::string&)> chain;
  chain.add("model-a", [](const std::string& p) { return p; });
  return chain.run("q") ? 0 : 1;
}

// Built with FAILOVER_SEPARATE_COMPILATION and without failover/compiled.hpp, a unit that wraps a
// call must not link: its failure path (classification, redaction, the errors a call stops with)
// is declared, not compiled, in it.
#include <failover/fallback_chain.hpp>

#include <string>

int main() {
  failover::fallback_chain<std::string(const std::string&)> chain;
  chain.add("model-a", [](const std::string& p) { return p; });
  return chain.run("q") ? 0 : 1;
}

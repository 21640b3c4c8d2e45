// Must not compile: the callable returns a type that is neither R nor outcome<R>.
#include <failover/failover.hpp>
#include <string>
#include <vector>
int main() {
  failover::fallback_chain<std::string()> chain;
  chain.add("m", [] { return std::vector<int>{}; });
}

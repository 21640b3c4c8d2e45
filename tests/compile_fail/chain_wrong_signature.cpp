// Must not compile: the callable takes an int, the chain passes a std::string.
#include <failover/failover.hpp>
#include <string>
int main() {
  failover::fallback_chain<std::string(const std::string&)> chain;
  chain.add("m", [](int) { return std::string("x"); });
}

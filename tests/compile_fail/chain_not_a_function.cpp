// Must not compile: the chain's template argument is a value type, not a signature.
#include <failover/failover.hpp>
#include <string>
int main() {
  failover::fallback_chain<std::string> chain;
}

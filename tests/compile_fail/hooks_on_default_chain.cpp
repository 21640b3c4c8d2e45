// Must not compile: a callback set on a chain of the default policies, whose hooks are no_hooks.
#include <failover/failover.hpp>
#include <string>
int main() {
  failover::fallback_chain<std::string(const std::string&)> chain;
  chain.hooks().retry = [](const failover::retry_scheduled&) {};
}

// Must not compile: a circuit-breaker policy with nothing but a name lookup.
#include <failover/failover.hpp>
#include <string_view>
struct my_breaker {
  int resolve(std::string_view) const { return 0; }
};
struct my_policies : failover::default_policies {
  using breaker = my_breaker;
};
int main() {
  failover::basic_retrier<my_policies> r("m");
}

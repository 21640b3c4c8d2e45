// Must not compile: a breaker whose admit() may throw (a gate answers with a verdict).
#include <failover/failover.hpp>
#include <string_view>
struct my_breaker : failover::no_breaker {
  failover::admission admit(handle, failover::time_point) const { return {}; }
};
struct my_policies : failover::default_policies {
  using breaker = my_breaker;
};
int main() {
  failover::basic_retrier<my_policies> r("m");
  (void)r.run([] { return 1; });
}

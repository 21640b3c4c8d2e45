// Must not compile: a retry budget whose try_retry() may throw (a gate answers with a verdict).
#include <failover/failover.hpp>
struct my_budget : failover::no_budget {
  bool try_retry(failover::time_point) const { return true; }
};
struct my_policies : failover::default_policies {
  using budget = my_budget;
};
int main() {
  failover::basic_retrier<my_policies> r("m");
  (void)r.run([] { return 1; });
}

// Must not compile: a Backoff policy without `next(int)`. The retrier and the chain are used in
// full, so the test also proves that the static_assert is the only error (no later use of the
// bad member is instantiated).
#include <failover/failover.hpp>
struct my_backoff {
  failover::duration delay(int) { return {}; }
};
struct my_policies : failover::default_policies {
  using backoff = my_backoff;
};
int main() {
  failover::basic_retrier<my_policies> r("m");
  (void)r.run([] { return 1; });
  failover::basic_fallback_chain<int(), my_policies> chain;
  chain.add("a", [] { return 1; });
  (void)chain.run();
}

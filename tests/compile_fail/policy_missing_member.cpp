// Must not compile: a Backoff policy without `next(int)`.
#include <failover/failover.hpp>
struct my_backoff {
  failover::duration delay(int) { return {}; }
};
struct my_policies : failover::default_policies {
  using backoff = my_backoff;
};
int main() {
  failover::basic_retrier<my_policies> r("m");
}

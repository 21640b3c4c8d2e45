// The README's example: two models, retries with jittered backoff, a fallback, and the trace.
#include <failover/failover.hpp>

#include <string>

// Stand-ins for your HTTP calls: the primary is rate limited, the fallback answers.
failover::outcome<std::string> ask_primary(const std::string&) {
  return failover::failure::http(429, "rate_limit_exceeded").header("retry-after-ms", "20");
}
std::string ask_fallback(const std::string& prompt) { return "echo: " + prompt; }

int main() {
  failover::fallback_chain<std::string(const std::string&)> chain;
  chain.add("gpt-4o", ask_primary, failover::role::standard, {/*max_attempts=*/2});
  chain.add("claude-sonnet", ask_fallback);

  auto answer = chain.run("Hello!");
  fmt::print("{}\n{}\nserved by {} (fallback: {})\n", answer.trace(), *answer,
             answer.served_by(), answer.fallback_used());
  return answer ? 0 : 1;
}

// A user's program: the README's chain with stand-ins for the HTTP calls. Built by the three
// consumer projects beside this file (scripts/gate.sh consumers); exits 0 when the fallback served.
#include <failover/failover.hpp>

#include <string>

int main() {
  failover::fallback_chain<std::string(const std::string&)> chain;
  chain.add("primary", [](const std::string&) -> failover::outcome<std::string> {
    return failover::failure::http(401, "invalid_api_key");  // permanent: fall back at once
  });
  chain.add("fallback", [](const std::string& prompt) { return "echo: " + prompt; });
  const auto answer = chain.run("hello");
  fmt::print("{}\n", answer.trace());
  return answer && *answer == "echo: hello" && answer.served_by() == "fallback" ? 0 : 1;
}

// failover-chat end to end: the binary is started against the mock provider (in this process, on
// 127.0.0.1) for every fault kind, and the tests read its exit code, its JSON trace and what the
// server saw.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "catch.hpp"
#include "support.hpp"

using namespace itest;
using failover::testing::mock_provider;
using failover::testing::refused_port;
using failover::testing::unanswered_port;
using nlohmann::json;

namespace {

// Millisecond backoff so that every run is quick; each test adds what it is about.
std::vector<std::string> fast(const mock_provider& mock, std::vector<std::string> more) {
  std::vector<std::string> args{"--base-url",           mock.base_url(),
                                "--base-delay-ms",      "1",
                                "--max-delay-ms",       "5",
                                "--max-attempts",       "3",
                                "--connect-timeout-ms", "500",
                                "--read-timeout-ms",    "3000",
                                "--trace-json"};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

run_result chat(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  return run_program(FAILOVER_CHAT_PATH, args, env);
}

json parse_out(const run_result& r) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  const json j = json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

// A temporary config file, removed at the end of the test.
struct config_file {
  explicit config_file(const std::string& text) {
    char name[] = "/tmp/failover-itest-config-XXXXXX";
    const int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    close(fd);
    path = name;
    std::ofstream(path) << text;
  }
  ~config_file() { std::remove(path.c_str()); }
  std::string path;
};

std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

}  // namespace

TEST_CASE("429 with Retry-After in seconds: waits, retries, answers") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::error(429, "rate_limit_exceeded").with_header("Retry-After", "1"),
                      mock_reply::answer("hello")});
  const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
  REQUIRE(r.exit_code == 0);
  const json j = parse_out(r);
  CHECK(j["answer"] == "hello");
  CHECK(j["served_by"] == "gpt");
  CHECK(j["fallback_used"] == false);
  CHECK(j["error"].is_null());
  REQUIRE(j["attempts"].size() == 2);
  CHECK(j["attempts"][0]["status"] == 429);
  CHECK(j["attempts"][0]["kind"] == "rate_limited");
  CHECK(j["attempts"][0]["wait_reason"] == "server");
  CHECK(j["attempts"][0]["wait_ms"].get<double>() >= 1000.0);
  CHECK(j["attempts"][1]["kind"] == "ok");
  // The wait by failover-chat's own clock; the server's log (another process) only shows that the
  // retry did not come at once, with a margin for a loaded machine.
  CHECK(j["attempts"][1]["start_ms"].get<double>() - j["attempts"][0]["start_ms"].get<double>() >=
        1000.0);
  const auto seen = mock.requests("gpt");
  REQUIRE(seen.size() == 2);
  CHECK(gap_ms(seen[0], seen[1]) >= 500);
}

TEST_CASE("429 with retry-after-ms and with an HTTP-date") {
  {
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(429).with_header("retry-after-ms", "120"),
                        mock_reply::answer("hello")});
    const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
    REQUIRE(r.exit_code == 0);
    const json j = parse_out(r);
    CHECK(j["attempts"][0]["wait_reason"] == "server");
    // A 120 ms gap is judged by failover-chat's own clock alone.
    CHECK(j["attempts"][0]["wait_ms"].get<double>() >= 120.0);
    CHECK(j["attempts"][1]["start_ms"].get<double>() - j["attempts"][0]["start_ms"].get<double>() >=
          120.0);
    CHECK(mock.count("gpt") == 2);
  }
  {
    mock_provider mock;
    mock.script("gpt",
                {mock_reply::error(429).with_retry_after_date(2s), mock_reply::answer("hello")});
    const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
    REQUIRE(r.exit_code == 0);
    CHECK(parse_out(r)["attempts"][0]["wait_reason"] == "server");
    const auto seen = mock.requests("gpt");
    REQUIRE(seen.size() == 2);
    CHECK(gap_ms(seen[0], seen[1]) >= 1000 - lag_ms);
  }
}

TEST_CASE("429 without Retry-After, and a Retry-After beyond --max-server-wait-ms") {
  {
    mock_provider mock;
    mock.script("gpt",
                {mock_reply::error(429, "rate_limit_exceeded"), mock_reply::answer("hello")});
    const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
    REQUIRE(r.exit_code == 0);
    CHECK(parse_out(r)["attempts"][0]["wait_reason"] == "backoff");
    CHECK(mock.count("gpt") == 2);
  }
  {
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(429).with_header("Retry-After", "120")});
    mock.script("backup", {mock_reply::answer("from backup")});
    const auto r = chat(
        fast(mock, {"--model", "gpt", "--model", "backup", "--max-server-wait-ms", "1000", "hi"}));
    REQUIRE(r.exit_code == 0);
    const json j = parse_out(r);
    CHECK(j["served_by"] == "backup");
    CHECK(j["fallback_used"] == true);
    CHECK(j["attempts"][0]["gave_up"] == "server wait too long");
    CHECK(mock.count("gpt") == 1);
  }
}

TEST_CASE("500, 502, 503, 504 and 529 are retried") {
  for (int status : {500, 502, 503, 504, 529}) {
    INFO("HTTP " << status);
    mock_provider mock;
    mock.script("gpt", {status == 529 ? mock_reply::anthropic_error(529, "overloaded_error")
                                      : mock_reply::error(status),
                        mock_reply::answer("hello")});
    const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
    REQUIRE(r.exit_code == 0);
    const json j = parse_out(r);
    CHECK(j["attempts"][0]["status"] == status);
    CHECK(j["attempts"][0]["kind"] == (status == 529 ? "overloaded" : "server_error"));
    CHECK(mock.count("gpt") == 2);
  }
}

TEST_CASE("connection refused and connect timeout, with per-model base URLs from --config") {
  mock_provider mock;
  refused_port down;
  unanswered_port silent;
  mock.script("backup", {mock_reply::answer("from backup")});
  config_file cfg(json({{"models", {"refused", "silent", "backup"}},
                        {"base_url", mock.base_url()},
                        {"max_attempts", 2},
                        {"base_delay_ms", 1},
                        {"max_delay_ms", 5},
                        {"connect_timeout_ms", 50},
                        {"model_list",
                         {{{"model_name", "refused"}, {"base_url", down.base_url()}},
                          {{"model_name", "silent"}, {"base_url", silent.base_url()}}}}})
                      .dump());
  const auto r = chat({"--config", cfg.path, "--trace-json", "hi"});
  REQUIRE(r.exit_code == 0);
  const json j = parse_out(r);
  CHECK(j["served_by"] == "backup");
  REQUIRE(j["attempts"].size() == 5);
  CHECK(j["attempts"][0]["kind"] == "connection_error");
  CHECK(j["attempts"][1]["kind"] == "connection_error");
  CHECK(j["attempts"][2]["kind"] == "connect_timeout");
  CHECK(j["attempts"][3]["kind"] == "connect_timeout");
  CHECK(j["attempts"][4]["kind"] == "ok");
  CHECK(mock.requests().size() == 1);  // only the fallback reached a server
}

TEST_CASE("read timeout: one retry, then the fallback") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::answer("too late").after(3000ms)});
  mock.script("backup", {mock_reply::answer("from backup")});
  const auto r = chat(fast(mock, {"--model", "gpt", "--model", "backup", "--read-timeout-ms", "100",
                                  "--max-attempts", "5", "hi"}));
  REQUIRE(r.exit_code == 0);
  const json j = parse_out(r);
  CHECK(j["served_by"] == "backup");
  REQUIRE(j["attempts"].size() == 3);
  CHECK(j["attempts"][0]["kind"] == "read_timeout");
  CHECK(j["attempts"][1]["gave_up"] == "read-timeout retries exhausted");
  const auto seen = mock.requests();
  REQUIRE(seen.size() == 3);
  CHECK(seen[2].model == "backup");
}

TEST_CASE("a reset mid-response and a body that is not JSON are retried") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::dropped(), mock_reply::raw(200, "<html>proxy</html>"),
                      mock_reply::answer("hello")});
  const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
  REQUIRE(r.exit_code == 0);
  const json j = parse_out(r);
  REQUIRE(j["attempts"].size() == 3);
  CHECK(j["attempts"][0]["kind"] == "connection_error");
  CHECK(j["attempts"][1]["kind"] == "invalid_response");
  CHECK(j["answer"] == "hello");
  CHECK(mock.count("gpt") == 3);
}

TEST_CASE("400 ends the chain with exit code 1 and a one-line reason") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::error(400, "", "bad field", "invalid_request_error")});
  mock.script("backup", {mock_reply::answer("never")});
  const auto r = chat(fast(mock, {"--model", "gpt", "--model", "backup", "hi"}));
  CHECK(r.exit_code == 1);
  const json j = parse_out(r);
  CHECK(j["answer"].is_null());
  CHECK(j["served_by"].is_null());
  CHECK(j["error"]["kind"] == "bad_request");
  CHECK(j["error"]["stop"] == "bad request ends the chain");
  CHECK(last_line(r.err).rfind("failover-chat: failed after 1 attempt (bad request ends the chain)",
                               0) == 0);
  CHECK(mock.count("backup") == 0);
}

TEST_CASE("401, 403 and 404 fall back without a retry") {
  for (int status : {401, 403, 404}) {
    INFO("HTTP " << status);
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(status)});
    mock.script("backup", {mock_reply::answer("from backup")});
    const auto r = chat(fast(mock, {"--model", "gpt", "--model", "backup", "hi"}));
    REQUIRE(r.exit_code == 0);
    const json j = parse_out(r);
    CHECK(j["served_by"] == "backup");
    CHECK(j["attempts"][0]["status"] == status);
    CHECK(mock.count("gpt") == 1);
  }
}

TEST_CASE("context_length_exceeded with and without --context-fallback") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::error(400, "context_length_exceeded", "too long")});
  mock.script("gpt-long", {mock_reply::answer("summary")});
  auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
  CHECK(r.exit_code == 1);
  CHECK(parse_out(r)["error"]["kind"] == "context_window");
  CHECK(mock.count("gpt") == 1);

  r = chat(fast(mock, {"--model", "gpt", "--context-fallback", "gpt-long", "hi"}));
  REQUIRE(r.exit_code == 0);
  CHECK(parse_out(r)["served_by"] == "gpt-long");
  CHECK(mock.count("gpt") == 2);
  CHECK(mock.count("gpt-long") == 1);
}

TEST_CASE("content_policy_violation and a 200 refusal, with and without --policy-fallback") {
  for (bool refusal : {false, true}) {
    INFO((refusal ? "200 refusal" : "content_policy_violation"));
    mock_provider mock;
    mock.script("gpt", {refusal ? mock_reply::refusal()
                                : mock_reply::error(400, "content_policy_violation", "refused")});
    mock.script("backup", {mock_reply::answer("never")});
    mock.script("reviewed", {mock_reply::answer("careful answer")});
    auto r = chat(fast(mock, {"--model", "gpt", "--model", "backup", "hi"}));
    CHECK(r.exit_code == 1);
    CHECK(parse_out(r)["error"]["kind"] == "content_policy");
    CHECK(mock.count("backup") == 0);

    r = chat(
        fast(mock, {"--model", "gpt", "--model", "backup", "--policy-fallback", "reviewed", "hi"}));
    REQUIRE(r.exit_code == 0);
    const json j = parse_out(r);
    CHECK(j["served_by"] == "reviewed");
    CHECK(j["policy_rerouted"] == true);
    CHECK(mock.count("backup") == 0);
    CHECK(mock.count("gpt") == 2);
  }
}

TEST_CASE("the hop limit (--max-hops) and the call deadline (--deadline-ms)") {
  {
    mock_provider mock;
    for (const char* m : {"a", "b", "c"}) mock.script(m, {mock_reply::error(503)});
    const auto r = chat(fast(mock, {"--model", "a", "--model", "b", "--model", "c", "--max-hops",
                                    "2", "--max-attempts", "1", "hi"}));
    CHECK(r.exit_code == 1);
    CHECK(parse_out(r)["error"]["stop"] == "hop limit");
    CHECK(mock.count("a") == 1);
    CHECK(mock.count("b") == 1);
    CHECK(mock.count("c") == 0);
  }
  {
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(503)});
    const auto r = chat(
        fast(mock, {"--model", "gpt", "--max-attempts", "1000", "--base-delay-ms", "30",
                    "--max-delay-ms", "30", "--jitter", "none", "--deadline-ms", "1500", "hi"}));
    // 1.5 s: the first attempt ends well inside it on a loaded machine, so the error keeps the
    // status of an answered attempt.
    CHECK(r.exit_code == 1);
    const json j = parse_out(r);
    CHECK(j["error"]["kind"] == "deadline_exceeded");
    CHECK(j["error"]["status"] == 503);
    // No attempt starts after the deadline by failover-chat's clock; the server saw none long
    // after.
    for (const auto& a : j["attempts"]) CHECK(a["start_ms"].get<double>() < 1500.0);
    const auto seen = mock.requests();
    REQUIRE(seen.size() >= 2);
    for (const auto& q : seen) CHECK(gap_ms(seen[0], q) < 1500 + 1000);
    CHECK(seen.size() <= 51);  // 30 ms apart within 1.5 s, not the 1000 attempts allowed
  }
}

TEST_CASE("the key is sent as a bearer token and never printed") {
  const std::string key = "plain-key-without-a-known-prefix-42";  // only the CLI can mask this one
  mock_provider mock;
  mock.script("gpt",
              {mock_reply::error(401, "invalid_api_key", "Incorrect API key provided: " + key)});
  mock.script("backup", {mock_reply::answer("from backup")});
  for (bool as_json : {true, false}) {
    std::vector<std::string> args = fast(mock, {"--model", "gpt", "hi"});
    if (!as_json) args.erase(std::find(args.begin(), args.end(), "--trace-json"));
    const auto r = chat(args, {"OPENAI_API_KEY=" + key});
    CHECK(r.exit_code == 1);
    CHECK(r.out.find(key) == std::string::npos);
    CHECK(r.err.find(key) == std::string::npos);
    CHECK(r.err.find("[redacted]") != std::string::npos);
  }
  CHECK(mock.requests("gpt").at(0).authorization == "Bearer " + key);

  // Per-model key variables from the config file.
  config_file cfg(
      json({{"models", {"gpt", "backup"}},
            {"base_url", mock.base_url()},
            {"model_list",
             {{{"model_name", "backup"}, {"api_key_env", "BACKUP_KEY"}, {"model", "backup"}}}}})
          .dump());
  const auto r = chat({"--config", cfg.path, "--trace-json", "hi"},
                      {"OPENAI_API_KEY=" + key, "BACKUP_KEY=second-key-0042"});
  REQUIRE(r.exit_code == 0);
  CHECK(mock.requests("backup").back().authorization == "Bearer second-key-0042");
  CHECK(r.out.find("second-key-0042") == std::string::npos);
}

TEST_CASE("without --trace-json: the answer on stdout, the trace on stderr") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::error(503), mock_reply::answer("hello there")});
  std::vector<std::string> args = fast(mock, {"--model", "gpt", "hi"});
  args.erase(std::find(args.begin(), args.end(), "--trace-json"));
  const auto r = chat(args);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "hello there\n");
  CHECK(r.err.find("#1 gpt try 1") != std::string::npos);
  CHECK(r.err.find("server_error") != std::string::npos);
  CHECK(r.err.find("served by gpt after 2 attempts") != std::string::npos);
}

TEST_CASE("bad usage exits with 2 and names the flag") {
  struct bad {
    std::vector<std::string> args;
    std::string names;
  };
  const std::vector<bad> cases = {
      {{"--bogus"}, "--bogus"},
      {{"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--max-attempts", "0", "hi"},
       "--max-attempts"},
      {{"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--max-attempts", "x", "hi"},
       "--max-attempts"},
      {{"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--jitter", "lots", "hi"},
       "--jitter"},
      {{"--base-url", "http://127.0.0.1:1/v1", "--model", "m"}, "PROMPT"},
      {{"--base-url", "http://127.0.0.1:1/v1", "hi"}, "--model"},
      {{"--base-url", "127.0.0.1:1", "--model", "m", "hi"}, "base URL"},
      {{"--model", "m", "hi"}, "--model needs --base-url"},
      {{"--base-url"}, "--base-url needs a value"},
      {{"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--base-delay-ms", "50",
        "--max-delay-ms", "10", "hi"},
       "--max-delay-ms"},
  };
  for (const auto& c : cases) {
    INFO(c.names);
    const auto r = chat(c.args);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(c.names) != std::string::npos);
    CHECK(r.out.empty());
  }
}

TEST_CASE("a bad config file exits with 2 and names the JSON path") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"models": ["a"], "base_url": "http://127.0.0.1:1/v1", "max_attempts": "3"})",
       "$.max_attempts"},
      {R"({"models": ["a"], "base_url": "http://127.0.0.1:1/v1", "max_atempts": 3})",
       "$.max_atempts: unknown key"},
      {R"({"models": ["a", 7], "base_url": "http://127.0.0.1:1/v1"})", "$.models[1]"},
      {R"({"models": ["a"], "model_list": [{"model_name": "a"}, {"model_name": "b", "base_url": 1}]})",
       "$.model_list[1].base_url"},
      {R"({"models": ["a"], "model_list": [{"base_url": "http://127.0.0.1:1/v1"}]})",
       "$.model_list[0]: missing model_name"},
      {R"({"models": ["a"]})", "model 'a' has no base URL"},
      {R"({"models": ["a"], )", "not valid JSON"},
  };
  for (const auto& [text, names] : cases) {
    INFO(text);
    config_file cfg(text);
    const auto r = chat({"--config", cfg.path, "hi"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(names) != std::string::npos);
    const bool names_file = r.err.find(cfg.path) != std::string::npos;
    CHECK((names_file || names.rfind("model '", 0) == 0));
  }
  const auto r = chat({"--config", "/nonexistent/failover.json", "hi"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("cannot read") != std::string::npos);
}

TEST_CASE("flags override the config file") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::error(503)});
  mock.script("other", {mock_reply::answer("from other")});
  config_file cfg(
      json({{"models", {"gpt"}}, {"base_url", mock.base_url()}, {"max_attempts", 1}}).dump());
  const auto r =
      chat({"--config", cfg.path, "--max-attempts", "2", "--base-delay-ms", "1", "--max-delay-ms",
            "2", "--model", "gpt", "--model", "other", "--trace-json", "hi"});
  REQUIRE(r.exit_code == 0);
  CHECK(parse_out(r)["served_by"] == "other");
  CHECK(mock.count("gpt") == 2);
}

TEST_CASE("the demo: no --base-url, an embedded provider, the whole story") {
  const auto r = chat({});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("rate_limited") != std::string::npos);
  CHECK(r.out.find("(server)") != std::string::npos);
  CHECK(r.out.find("HTTP 503") != std::string::npos);
  CHECK(r.out.find("served by gpt-4o after 3 attempts") != std::string::npos);
  CHECK(r.out.find("served by claude-sonnet (FALLBACK)") != std::string::npos);

  const auto j = chat({"--trace-json", "--max-attempts", "2"});
  REQUIRE(j.exit_code == 0);
  const auto nl = j.out.find('\n');
  REQUIRE(nl != std::string::npos);
  const json first = json::parse(j.out.substr(0, nl));
  CHECK(first["served_by"] == "claude-sonnet");  // two attempts: 429, 503, then the fallback
  CHECK(first["attempts"][0]["wait_reason"] == "server");

  const auto help = chat({"--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("--policy-fallback") != std::string::npos);
}

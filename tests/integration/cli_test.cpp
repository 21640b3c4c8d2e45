// failover-chat end to end: the binary is started against the mock provider (in this process, on
// 127.0.0.1) for every fault kind, and the tests read its exit code, its JSON trace and what the
// server saw.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
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
  const auto seen = mock.requests("gpt");
  REQUIRE(seen.size() == 2);
  CHECK(gap_ms(seen[0], seen[1]) >= 1000 - lag_ms);
}

TEST_CASE("429 with retry-after-ms and with an HTTP-date") {
  {
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(429).with_header("retry-after-ms", "120"),
                        mock_reply::answer("hello")});
    const auto r = chat(fast(mock, {"--model", "gpt", "hi"}));
    REQUIRE(r.exit_code == 0);
    CHECK(parse_out(r)["attempts"][0]["wait_reason"] == "server");
    const auto seen = mock.requests("gpt");
    REQUIRE(seen.size() == 2);
    CHECK(gap_ms(seen[0], seen[1]) >= 120 - lag_ms);
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

TEST_CASE("read timeout: the fallback takes over at once") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::answer("too late").after(3000ms)});
  mock.script("backup", {mock_reply::answer("from backup")});
  const auto r = chat(fast(mock, {"--model", "gpt", "--model", "backup", "--read-timeout-ms", "100",
                                  "--max-attempts", "5", "hi"}));
  REQUIRE(r.exit_code == 0);
  const json j = parse_out(r);
  CHECK(j["served_by"] == "backup");
  REQUIRE(j["attempts"].size() == 2);
  CHECK(j["attempts"][0]["kind"] == "read_timeout");
  CHECK(j["attempts"][0]["gave_up"] == "read timeout, a fallback takes over");
  const auto seen = mock.requests();
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].model == "backup");
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
        fast(mock, {"--model", "gpt", "--max-attempts", "1000", "--base-delay-ms", "20",
                    "--max-delay-ms", "20", "--jitter", "none", "--deadline-ms", "300", "hi"}));
    CHECK(r.exit_code == 1);
    const json j = parse_out(r);
    CHECK(j["error"]["kind"] == "deadline_exceeded");
    CHECK(j["error"]["status"] == 503);
    const auto seen = mock.requests();
    REQUIRE(seen.size() >= 2);
    for (const auto& q : seen) CHECK(gap_ms(seen[0], q) < 300 + lag_ms);
    CHECK(seen.size() <= 16);  // 20 ms apart within 300 ms, not the 1000 attempts allowed
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

TEST_CASE("the config file: a directory, a device and a file over 1 MiB are refused") {
  struct bad {
    std::string path;
    std::string reason;
  };
  char dir[] = "/tmp/failover-itest-dir-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  // Valid JSON that would run, padded past the limit: only the size can refuse it.
  config_file big(R"({"models": ["m"], "base_url": "http://127.0.0.1:1/v1")" +
                  std::string(1 << 20, ' ') + "}");
  const std::vector<bad> cases = {{dir, "is a directory"},
                                  {"/dev/null", "is not a regular file"},
                                  {big.path, "larger than 1 MiB"}};
  for (const auto& c : cases) {
    INFO(c.path);
    const auto r = chat({"--config", c.path, "hi"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(c.path + ": " + c.reason) != std::string::npos);
    CHECK(r.out.empty());
  }
  rmdir(dir);
}

TEST_CASE("a config file that is not JSON: the position is named, the text is not echoed") {
  config_file cfg("{\"models\": [\"a\"],\n \"api_key\": sk-not-a-json-value-0123456789}");
  const auto r = chat({"--config", cfg.path, "hi"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find(cfg.path + ": not valid JSON (line 2") != std::string::npos);
  CHECK(r.err.find("sk-not") == std::string::npos);
  CHECK(r.err.find("0123") == std::string::npos);
}

TEST_CASE("models: a model_list entry for no model, a model listed twice, LiteLLM's keys") {
  const std::string url = "http://127.0.0.1:1/v1";
  struct bad {
    std::string config;              // "" = no config file
    std::vector<std::string> flags;  // after --config FILE, before the prompt
    std::vector<std::string> names;  // each must be in stderr
  };
  const std::vector<bad> cases = {
      {json({{"models", {"claude-sonnet"}},
             {"base_url", url},
             {"model_list", {{{"model_name", "claude-sonet"}, {"model", "claude-3-5"}}}}})
           .dump(),
       {},
       {"$.model_list[0].model_name: 'claude-sonet' is not a model of the chain"}},
      {json({{"models", {"a", "b"}}, {"context_fallbacks", {"a"}}, {"base_url", url}}).dump(),
       {},
       {"model 'a' is listed twice"}},
      {"", {"--base-url", url, "--model", "a", "--model", "a"}, {"model 'a' is listed twice"}},
      {json({{"models", {"a"}},
             {"model_list",
              {{{"model_name", "a"},
                {"litellm_params",
                 {{"model", "openai/a"}, {"api_base", url}, {"api_key", "os.environ/K"}}}}}}})
           .dump(),
       {},
       {"$.model_list[0].litellm_params: unknown key", "\"base_url\" (for api_base)",
        "\"api_key_env\""}},
      {json({{"models", {"a"}},
             {"base_url", url},
             {"model_list", {{{"model_name", "a"}, {"api_key", "sk-in-the-file-0123456789"}}}}})
           .dump(),
       {},
       {"$.model_list[0].api_key: unknown key", "write \"api_key_env\""}},
      {json({{"models", {"a"}}, {"base_url", url}, {"context_window_fallbacks", {"b"}}}).dump(),
       {},
       {"$.context_window_fallbacks: unknown key; write \"context_fallbacks\""}},
      {json({{"models", {"a"}}, {"base_url", url}, {"num_retries", 2}}).dump(),
       {},
       {"$.num_retries: unknown key; write \"max_attempts\""}},
      {R"({"models": ["a"], "base_url": "http://127.0.0.1:1/v1",
           "max_attempts": 18446744073709551615})",
       {},
       {"$.max_attempts: too large"}},
      {"",
       {"--base-url", url, "--model", "a", "--max-attempts", "99999999999999999999"},
       {"--max-attempts: too large"}},
      {"", {"--base-url", url, "--model", "--max-attempts", "3"}, {"--model needs a value"}},
      {"", {"--base-url", url, "--model", "a", "--max-hops="}, {"--max-hops needs a value"}},
  };
  for (const auto& c : cases) {
    INFO(c.config << " " << c.flags.size());
    std::optional<config_file> cfg;
    std::vector<std::string> args;
    if (!c.config.empty()) {
      cfg.emplace(c.config);
      args = {"--config", cfg->path};
    }
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    args.push_back("hi");
    const auto r = chat(args);
    CHECK(r.exit_code == 2);
    for (const auto& n : c.names) CHECK(r.err.find(n) != std::string::npos);
    CHECK(r.err.find("got -1") == std::string::npos);
    CHECK(r.err.find("sk-in-the-file") == std::string::npos);
    CHECK(r.out.empty());
  }
}

TEST_CASE("models: a model_list entry for a model the flags chose, or the file's list, is kept") {
  mock_provider mock;
  mock.script("b-upstream", {mock_reply::answer("from b")});
  config_file cfg(
      json({{"models", {"a", "b"}},
            {"base_url", "http://127.0.0.1:1/v1"},
            {"model_list",
             {{{"model_name", "a"}, {"model", "a-upstream"}},
              {{"model_name", "b"}, {"model", "b-upstream"}, {"base_url", mock.base_url()}}}}})
          .dump());
  const auto r = chat({"--config", cfg.path, "--model", "b", "--trace-json", "hi"});
  REQUIRE(r.exit_code == 0);
  CHECK(parse_out(r)["served_by"] == "b");
  CHECK(mock.count("b-upstream") == 1);
}

TEST_CASE(
    "read timeouts: --max-read-timeout-retries sets how often one model is retried after a read "
    "timeout") {
  for (int retries : {0, 2}) {
    INFO("--max-read-timeout-retries " << retries);
    mock_provider mock;
    mock.script("gpt", {mock_reply::answer("too late").after(2000ms)});
    const auto r =
        chat(fast(mock, {"--model", "gpt", "--read-timeout-ms", "100", "--max-attempts", "5",
                         "--max-read-timeout-retries", std::to_string(retries), "hi"}));
    CHECK(r.exit_code == 1);
    const json j = parse_out(r);
    REQUIRE(j["attempts"].size() == static_cast<std::size_t>(retries + 1));
    for (const auto& a : j["attempts"]) CHECK(a["kind"] == "read_timeout");
    CHECK(j["attempts"].back()["gave_up"] == "read-timeout retries exhausted");
    CHECK(mock.count("gpt") == static_cast<std::size_t>(retries + 1));
  }
  // The config key, overridden by the flag; and the bound.
  mock_provider mock;
  mock.script("gpt", {mock_reply::answer("too late").after(2000ms)});
  config_file cfg(json({{"models", {"gpt"}},
                        {"base_url", mock.base_url()},
                        {"read_timeout_ms", 100},
                        {"max_read_timeout_retries", 0}})
                      .dump());
  auto r = chat({"--config", cfg.path, "--trace-json", "hi"});
  CHECK(r.exit_code == 1);
  CHECK(parse_out(r)["attempts"].size() == 1);
  r = chat({"--config", cfg.path, "--max-read-timeout-retries", "-1", "hi"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--max-read-timeout-retries: must be at least 0, got -1") != std::string::npos);
  r = chat({"--help"});
  CHECK(r.out.find("--max-read-timeout-retries N") != std::string::npos);
}

TEST_CASE("secrets: a key cut by the message limit, a base URL with a secret, a key as a name") {
  const std::string key = "plain-key-without-a-known-prefix-42";  // 35 characters
  // Every 8-character piece of the key: none may be printed.
  const auto leaks = [&](const std::string& text) {
    for (std::size_t i = 0; i + 8 <= key.size(); ++i)
      if (text.find(key.substr(i, 8)) != std::string::npos) return true;
    return false;
  };
  {
    // The provider echoes the key where the 400-character message limit cuts it.
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(401, "invalid_api_key",
                                          std::string(372, 'x') + key + " was rejected")});
    for (bool as_json : {true, false}) {
      std::vector<std::string> args = fast(mock, {"--model", "gpt", "hi"});
      if (!as_json) args.erase(std::find(args.begin(), args.end(), "--trace-json"));
      const auto r = chat(args, {"OPENAI_API_KEY=" + key});
      CHECK(r.exit_code == 1);
      CHECK_FALSE(leaks(r.out));
      CHECK_FALSE(leaks(r.err));
    }
    CHECK(mock.requests("gpt").at(0).authorization == "Bearer " + key);
  }
  const std::vector<std::string> urls = {"http://user:" + key + "@127.0.0.1:1/v1",
                                         "http://127.0.0.1:1/v1?key=" + key,
                                         "127.0.0.1:1/v1#" + key, key + "@127.0.0.1:1/v1"};
  for (const auto& url : urls) {
    INFO(url);
    auto r = chat({"--base-url", url, "--model", "m", "hi"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("base URL of model 'm'") != std::string::npos);
    CHECK_FALSE(leaks(r.err));
    config_file cfg(
        json({{"models", {"m"}}, {"model_list", {{{"model_name", "m"}, {"base_url", url}}}}})
            .dump());
    r = chat({"--config", cfg.path, "hi"});
    CHECK(r.exit_code == 2);
    CHECK_FALSE(leaks(r.err));
  }
  // The key given where its variable's name belongs.
  for (const std::string& name : {key, std::string("gsk_abcdefgh0123456789wxyz")}) {
    INFO(name);
    const auto r =
        chat({"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--api-key-env", name, "hi"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--api-key-env") != std::string::npos);
    CHECK(r.err.find(name.substr(4, 12)) == std::string::npos);
  }
}

namespace {

// A response shaped like the mock provider's (which always sends usage 1 + 1 = 2).
failover::http::response provider_body(const std::string& finish_reason) {
  failover::http::response r;
  r.status = 200;
  r.body = json({{"id", "chatcmpl-1"},
                 {"model", "m"},
                 {"choices",
                  {{{"index", 0},
                    {"message", {{"role", "assistant"}, {"content", "x"}}},
                    {"finish_reason", finish_reason}}}},
                 {"usage", {{"prompt_tokens", 1}, {"completion_tokens", 1}, {"total_tokens", 2}}}})
               .dump();
  return r;
}

// The CLI shows the usage openai::read_chat reports: on an answer, and on a refusal the provider
// billed (error::usage). These say whether read_chat reads it in this build.
bool read_chat_reads_usage() {
  const auto c = failover::openai::read_chat(provider_body("stop"));
  return c && c.value().usage.has_value();
}
bool read_chat_reads_refusal_usage() {
  const auto c = failover::openai::read_chat(provider_body("content_filter"));
  return !c && c.failure().usage.has_value();
}

}  // namespace

TEST_CASE("usage and model: the provider's token counts and model id, per attempt and in all") {
  mock_provider mock;
  mock.script("gpt-4o-2024-08-06", {mock_reply::refusal()});
  mock.script("reviewed", {mock_reply::answer("careful answer")});
  config_file cfg(json({{"models", {"gpt"}},
                        {"policy_fallbacks", {"reviewed"}},
                        {"base_url", mock.base_url()},
                        {"model_list", {{{"model_name", "gpt"}, {"model", "gpt-4o-2024-08-06"}}}}})
                      .dump());
  const json two = {{"prompt", 1}, {"completion", 1}, {"total", 2}};

  auto r = chat({"--config", cfg.path, "--trace-json", "hi"});
  REQUIRE(r.exit_code == 0);
  const json j = parse_out(r);
  CHECK(j["served_by"] == "reviewed");
  CHECK(j["model"] == "reviewed");  // as the provider named it
  REQUIRE(j["attempts"].size() == 2);
  CHECK(j["attempts"][0].contains("usage"));
  CHECK(j["attempts"][1].contains("usage"));
  if (read_chat_reads_usage()) {
    CHECK(j["usage"] == two);
    CHECK(j["attempts"][1]["usage"] == two);
  } else {
    WARN("openai::read_chat does not read usage in this build: usage is null");
    CHECK(j["usage"].is_null());
  }
  if (read_chat_reads_refusal_usage()) {
    CHECK(j["attempts"][0]["usage"] == two);
  } else {
    WARN("openai::read_chat does not read a refusal's usage in this build");
    CHECK(j["attempts"][0]["usage"].is_null());
  }

  // Text mode: the summary line (the last line) says the same.
  r = chat({"--config", cfg.path, "hi"});
  REQUIRE(r.exit_code == 0);
  const std::string line = last_line(r.err);
  CHECK(line.rfind("served by reviewed (REROUTED", 0) == 0);
  CHECK(line.find("; model reviewed") != std::string::npos);
  if (read_chat_reads_usage())
    CHECK(line.find("; tokens 1 prompt + 1 completion = 2") != std::string::npos);
  if (read_chat_reads_refusal_usage())
    CHECK(line.find("; failed attempts billed 2 tokens") != std::string::npos);

  // The model id the provider reports, where it differs from the chain entry's name.
  mock_provider dated;
  dated.script("gpt-4o-2024-08-06", {mock_reply::answer("hello")});
  config_file alias(
      json({{"models", {"gpt"}},
            {"base_url", dated.base_url()},
            {"model_list", {{{"model_name", "gpt"}, {"model", "gpt-4o-2024-08-06"}}}}})
          .dump());
  r = chat({"--config", alias.path, "--trace-json", "hi"});
  REQUIRE(r.exit_code == 0);
  const json k = parse_out(r);
  CHECK(k["served_by"] == "gpt");
  CHECK(k["model"] == "gpt-4o-2024-08-06");
  CHECK(k["attempts"][0]["usage"] == k["usage"]);
}

TEST_CASE("hints: a failed call names the setting that would help, where one is known") {
  struct fault {
    std::string name;
    std::vector<mock_reply> replies;
    std::vector<std::string> flags;
    std::vector<std::string> env;
    std::string hint;  // "" = none
  };
  const std::string key = "plain-key-without-a-known-prefix-42";
  const std::vector<fault> faults = {
      {"context window",
       {mock_reply::error(400, "context_length_exceeded", "too long")},
       {},
       {},
       "add a --context-fallback"},
      {"context window, the fallback too long as well",
       {mock_reply::error(400, "context_length_exceeded", "too long")},
       {"--context-fallback", "gpt-long"},
       {},
       ""},
      {"content policy",
       {mock_reply::error(400, "content_policy_violation", "refused")},
       {},
       {},
       "add a --policy-fallback, if rerouting is acceptable"},
      {"deadline",
       {mock_reply::error(503)},
       {"--max-attempts", "1000", "--base-delay-ms", "20", "--max-delay-ms", "20", "--deadline-ms",
        "200"},
       {},
       "raise --deadline-ms (now 200)"},
      {"unauthorized",
       {mock_reply::error(401)},
       {},
       {"OPENAI_API_KEY=" + key},
       "check the key in $OPENAI_API_KEY"},
      {"unauthorized, another variable",
       {mock_reply::error(401)},
       {"--api-key-env", "TEAM_KEY"},
       {"TEAM_KEY=" + key},
       "check the key in $TEAM_KEY"},
      {"unauthorized, no key set",
       {mock_reply::error(401)},
       {"--api-key-env", "TEAM_KEY"},
       {"TEAM_KEY="},
       "$TEAM_KEY is not set"},
      {"server wait above the cap",
       {mock_reply::error(429).with_header("Retry-After", "120")},
       {"--max-server-wait-ms", "1000"},
       {},
       "raise --max-server-wait-ms (now 1000; the server asked for 120.00s)"},
      {"hop limit",
       {mock_reply::error(503)},
       {"--model", "backup", "--max-hops", "1"},
       {},
       "raise --max-hops (now 1)"},
      {"read timeouts, no fallback",
       {mock_reply::answer("too late").after(2000ms)},
       {"--read-timeout-ms", "100", "--max-read-timeout-retries", "0"},
       {},
       "raise --read-timeout-ms (now 100)"},
      {"a server that stays down", {mock_reply::error(503)}, {}, {}, ""},
      {"a bad request", {mock_reply::error(400, "", "bad field")}, {}, {}, ""},
  };
  for (const auto& f : faults) {
    INFO(f.name);
    mock_provider mock;
    mock.script("gpt", f.replies);
    mock.script("gpt-long", {mock_reply::error(400, "context_length_exceeded", "too long")});
    mock.script("backup", {mock_reply::answer("never")});
    std::vector<std::string> more = {"--model", "gpt"};
    more.insert(more.end(), f.flags.begin(), f.flags.end());
    more.push_back("hi");
    auto args = fast(mock, more);
    const auto r = chat(args, f.env);
    CHECK(r.exit_code == 1);
    const json j = parse_out(r);
    const std::string line = last_line(r.err);
    CHECK(line.rfind("failover-chat: failed after", 0) == 0);
    if (f.hint.empty()) {
      CHECK(j["error"]["hint"].is_null());
      CHECK(line.find("hint:") == std::string::npos);
    } else {
      REQUIRE(j["error"]["hint"].is_string());
      CHECK(j["error"]["hint"].get<std::string>().find(f.hint) != std::string::npos);
      CHECK(line.find("; hint: ") != std::string::npos);
      CHECK(line.find(f.hint) != std::string::npos);
    }
    CHECK(r.err.find(key) == std::string::npos);
    CHECK(r.out.find(key) == std::string::npos);
  }
}

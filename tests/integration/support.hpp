// Shared by the integration tests: chains that call the mock provider through either HTTP adapter,
// and a runner that starts the failover-chat binary and collects its exit code and output.
#pragma once

#include <failover/adapters/httplib.hpp>
#include <failover/adapters/openai.hpp>
#include <failover/failover.hpp>
#include <failover/testing/mock_provider.hpp>
#if defined(FAILOVER_TEST_CURL)
#include <failover/adapters/curl.hpp>
#endif

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace itest {

using namespace std::chrono_literals;
using completion = failover::openai::chat_completion;
using chain_type = failover::fallback_chain<completion(const std::string&)>;
using result_type = failover::result<completion>;
using failover::testing::mock_reply;

enum class client { httplib, curl };

inline const char* name_of(client c) {
  return c == client::httplib ? "httplib" : "curl";
}

// Every adapter built into this test run.
inline std::vector<client> clients() {
#if defined(FAILOVER_TEST_CURL)
  return {client::httplib, client::curl};
#else
  return {client::httplib};
#endif
}

using call_type = std::function<failover::outcome<completion>(const failover::attempt_context&,
                                                              const std::string&)>;

// One chat completion through the chosen adapter, the way an application would write it.
inline call_type caller(client c, const std::string& base_url, const std::string& model,
                        failover::http::timeouts limits, std::string key = {}) {
  if (c == client::httplib) {
    auto endpoint = std::make_shared<failover::http::httplib_endpoint>(base_url, limits);
    return [endpoint, model, key](const failover::attempt_context& ctx,
                                  const std::string& prompt) -> failover::outcome<completion> {
      httplib::Headers headers;
      if (!key.empty()) headers.emplace("Authorization", "Bearer " + key);
      auto sent = endpoint->post(ctx, "/chat/completions",
                                 failover::openai::chat_request(model, prompt), headers);
      if (!sent) return std::move(sent).failure();
      return failover::openai::read_chat(sent.value());
    };
  }
#if defined(FAILOVER_TEST_CURL)
  auto endpoint = std::make_shared<failover::http::curl_endpoint>(base_url, limits);
  return [endpoint, model, key](const failover::attempt_context& ctx,
                                const std::string& prompt) -> failover::outcome<completion> {
    std::vector<std::string> headers;
    if (!key.empty()) headers.push_back("Authorization: Bearer " + key);
    auto sent = endpoint->post(ctx, "/chat/completions",
                               failover::openai::chat_request(model, prompt), headers);
    if (!sent) return std::move(sent).failure();
    return failover::openai::read_chat(sent.value());
  };
#else
  throw std::logic_error("curl adapter not built");
#endif
}

struct model_spec {
  std::string name;
  std::string base_url;
  failover::role role = failover::role::standard;
};

// Millisecond waits: the rules are the same as with seconds, and the suite stays fast.
struct setup {
  client adapter = client::httplib;
  std::vector<model_spec> models;
  failover::retry_options retry{3, 1, std::chrono::seconds(5)};
  failover::backoff_options backoff{1ms, 2.0, 5ms, failover::jitter::full};
  failover::chain_options bounds{};
  failover::http::timeouts limits{500ms, 3000ms};
  std::string key;
};

inline std::unique_ptr<chain_type> make_chain(const setup& s) {
  auto chain = std::make_unique<chain_type>(s.bounds);
  for (const auto& m : s.models)
    chain->add(m.name, caller(s.adapter, m.base_url, m.name, s.limits, s.key), m.role, s.retry,
               failover::exponential_backoff<>(s.backoff));
  return chain;
}

inline long long ms(failover::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// What the server logs lags what the client did by a socket hop and a thread switch; a loaded
// machine can stretch that to milliseconds. Timing checks allow this much, far below the waits
// they check (a missing wait would show as a gap of about zero).
inline constexpr long long lag_ms = 20;

// The time between two requests as the server saw them.
inline long long gap_ms(const failover::testing::mock_request& a,
                        const failover::testing::mock_request& b) {
  return ms(b.received - a.received);
}

// One run of a program: exit code and everything it printed.
struct run_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `program args...` with `extra_env` added to this process's environment; output goes
// through temporary files, so neither stream can fill up and block the child. A child still
// running after `limit` is killed (and the test fails on its exit code).
inline run_result run_program(const std::string& program, const std::vector<std::string>& args,
                              const std::vector<std::string>& extra_env = {},
                              std::chrono::seconds limit = std::chrono::seconds(30)) {
  char out_path[] = "/tmp/failover-itest-out-XXXXXX";
  char err_path[] = "/tmp/failover-itest-err-XXXXXX";
  const int out_fd = mkstemp(out_path);
  const int err_fd = mkstemp(err_path);
  if (out_fd < 0 || err_fd < 0) throw std::runtime_error("mkstemp failed");

  std::vector<std::string> argv_s{program};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    bool replaced = false;
    for (const auto& x : extra_env)
      if (entry.substr(0, entry.find('=') + 1) == x.substr(0, x.find('=') + 1)) replaced = true;
    if (!replaced) env_s.push_back(entry);
  }
  env_s.insert(env_s.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_fd, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out_fd);
  close(err_fd);
  if (rc != 0) throw std::runtime_error("cannot start " + program);

  run_result r;
  int status = 0;
  const auto give_up = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (std::chrono::steady_clock::now() > give_up) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(2ms);
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_all(out_path);
  r.err = read_all(err_path);
  std::remove(out_path);
  std::remove(err_path);
  return r;
}

}  // namespace itest

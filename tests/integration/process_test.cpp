// What an attempt does to the process around it: signals it may raise, a fork, the exit. This
// binary never makes an httplib::Server (which ignores SIGPIPE for the whole process), and each
// case runs its attempts in a forked child whose exit status the parent judges.
#include <failover/adapters/httplib.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>
#include <thread>

#include "catch.hpp"
#include "raw_server.hpp"

using namespace std::chrono_literals;
using itest::raw_connection;
using itest::raw_server;
using steady = std::chrono::steady_clock;

namespace {

// Runs `body` in a forked child and tells how the child ended: "exit N", "signal N", or
// "still running" when it did not end within `limit` (then it is killed). `body` returns the
// exit code; the child then ends with std::exit when `run_exit_handlers` (static destructors and
// atexit handlers run), else with _exit (nothing runs).
std::string in_child(std::chrono::milliseconds limit, const std::function<int()>& body,
                     bool run_exit_handlers = false) {
  std::cout.flush();
  std::fflush(nullptr);  // a child that calls exit() would print the parent's buffers again
  const pid_t pid = ::fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    int code = 3;
    try {
      code = body();
    } catch (...) {
      code = 4;
    }
    if (run_exit_handlers) std::exit(code);
    ::_exit(code);
  }
  const auto until = steady::now() + limit;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (steady::now() >= until) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return "still running";
    }
    std::this_thread::sleep_for(5ms);
  }
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "ended oddly";
}

[[maybe_unused]] long long ms_since(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t).count();
}

}  // namespace

TEST_CASE("an upload the watchdog cuts short does not kill the process with SIGPIPE") {
  // The default disposition, as in an application that never touched it: a write to a socket
  // that was shut down ends the process, unless the adapter keeps the signal from it.
  ::signal(SIGPIPE, SIG_DFL);
  // Answers early and never reads the request: the 16 MiB body fills the socket's buffers and
  // httplib waits to write more. The deadline's shutdown ends that write; the early answer makes
  // the socket look alive to httplib, so it writes again, to a socket shut for writing.
  raw_server server(
      [](raw_connection& c) {
        if (c.send("HTTP/1.1 413 Payload Too Large\r\n")) c.stall(10s);
      },
      raw_server::unread);
  const std::string ended = in_child(10s, [&] {
    failover::http::httplib_endpoint endpoint(server.base_url(), {500ms, 10s});
    failover::attempt_context ctx;
    ctx.remaining = 300ms;
    const auto sent = endpoint.post(ctx, "/chat/completions", std::string(16 << 20, 'x'));
    if (sent) return 1;
    if (sent.failure().transport != failover::transport_error::read_timeout) return 2;
    // A SIGPIPE held back for the attempt is not left pending for the application either.
    sigset_t pending;
    sigemptyset(&pending);
    if (::sigpending(&pending) != 0 || sigismember(&pending, SIGPIPE) == 1) return 5;
    return 0;
  });
  CHECK(ended == "exit 0");
}

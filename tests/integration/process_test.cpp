// What an attempt does to the process around it: signals it may raise, a fork, the exit. This
// binary never makes an httplib::Server (which ignores SIGPIPE for the whole process), and each
// case runs its attempts in a forked child whose exit status the parent judges.
#include <failover/adapters/httplib.hpp>
#if defined(FAILOVER_TEST_CURL)
#include <failover/adapters/curl.hpp>
#endif

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <new>
#include <string>
#include <system_error>
#include <thread>

#include "catch.hpp"
#include "raw_server.hpp"

using namespace std::chrono_literals;
using itest::raw_connection;
using itest::raw_server;
using steady = std::chrono::steady_clock;

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FAILOVER_TEST_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(FAILOVER_TEST_TSAN)
// ThreadSanitizer ends a child that starts a thread after a threaded parent forked it, unless
// told otherwise; such children are what this binary tests. (TSAN_OPTIONS still adds to this.)
extern "C" const char* __tsan_default_options() {
  return "die_after_fork=0";
}
#endif

#if defined(FAILOVER_TEST_REPLACE_NEW)  // not in sanitizer builds, whose runtime has its own
namespace {

// The calling thread's n-th allocation from now fails (0: none fails), and how many it made:
// see operator new below.
thread_local int failing_allocation = 0;
thread_local long allocations = 0;

}  // namespace

// Counts down `failing_allocation`; array and nothrow forms come through here too.
void* operator new(std::size_t size) {
  ++allocations;
  if (failing_allocation > 0 && --failing_allocation == 0) throw std::bad_alloc();
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

#endif  // FAILOVER_TEST_REPLACE_NEW
namespace {

// Runs `body` in a forked child and tells how the child ended: "exit N", "signal N", or
// "still running" when it did not end within `limit` (then it is killed). `body` returns the
// exit code; the child then ends with std::exit when `run_exit_handlers` (static destructors and
// atexit handlers run), else with _exit (nothing runs). The limits are generous (30 s): a child
// under AddressSanitizer on a loaded machine (its leak check at exit included) took over 5 s.
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

long long ms_since(steady::time_point t) {
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
  const std::string ended = in_child(30s, [&] {
    failover::http::httplib_endpoint endpoint(server.base_url(), {500ms, 10s});
    failover::attempt_context ctx;
    ctx.remaining = 300ms;
    const auto sent = endpoint.post(ctx, "/chat/completions", std::string(16 << 20, 'x'));
    if (sent) return 1;
    // A timeout: a read timeout as a rule; on a loaded machine the 300 ms can run out before the
    // connection is made, which is a connect timeout. Any other kind exits 10 + its number.
    const auto kind = sent.failure().transport;
    if (kind != failover::transport_error::read_timeout &&
        kind != failover::transport_error::connect_timeout) {
      std::cerr << "the cut-short upload ended as transport kind " << static_cast<int>(kind) << " ("
                << sent.failure().message << ")\n";
      return 10 + static_cast<int>(kind);
    }
    // A SIGPIPE held back for the attempt is not left pending for the application either.
    sigset_t pending;
    sigemptyset(&pending);
    if (::sigpending(&pending) != 0 || sigismember(&pending, SIGPIPE) == 1) return 5;
    return 0;
  });
  CHECK(ended == "exit 0");
}

namespace {

// A server that answers at once, and one that drips the status line a byte every 20 ms for far
// longer than any test waits.
raw_server::script answers() {
  return [](raw_connection& c) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
  };
}
raw_server::script drips() {
  return [](raw_connection& c) { c.drip("HTTP/1.1 200 " + std::string(5000, 'a'), 20ms); };
}

bool answered(const std::string& base_url) {
  failover::http::httplib_endpoint endpoint(base_url, {500ms, 3s});
  const failover::attempt_context ctx;
  const auto sent = endpoint.post(ctx, "/chat/completions", "{}");
  return sent && sent.value().status == 200;
}

// 0 when an attempt against a dripping server ends on its 300 ms deadline, as a read timeout,
// within a second more; else a code saying what went wrong.
int ends_on_deadline(const std::string& base_url) {
  failover::http::httplib_endpoint endpoint(base_url, {500ms, 10s});
  failover::attempt_context ctx;
  ctx.remaining = 300ms;
  const auto start = steady::now();
  const auto sent = endpoint.post(ctx, "/chat/completions", "{}");
  if (sent) return 1;
  if (sent.failure().transport != failover::transport_error::read_timeout) return 2;
  return ms_since(start) < 300 + 1000 ? 0 : 3;
}

std::string dripping_url;                 // for the atexit handler below
constexpr int exited_after_attempt = 20;  // the handler ran, and its attempt ended in time
void attempt_while_exiting() {
  const int code = ends_on_deadline(dripping_url);
  ::_exit(code == 0 ? exited_after_attempt : 10 + code);
}

}  // namespace

TEST_CASE("a forked child's attempts are watched, and the child exits") {
  raw_server quick(answers());
  raw_server slow(drips());
  REQUIRE(answered(quick.base_url()));  // the parent's watchdog thread runs now
  // The child has the parent's watchdog in memory but not its thread: it needs its own.
  CHECK(in_child(
            30s, [&] { return ends_on_deadline(slow.base_url()); },
            /*run_exit_handlers=*/true) == "exit 0");
  CHECK(answered(quick.base_url()));  // and the parent's still serves it
}

TEST_CASE("the shared watchdog outlives the process's static destructors") {
  raw_server quick(answers());
  raw_server slow(drips());
  dripping_url = slow.base_url();
  // cpp-httplib's own function-local statics (the URL parser's regex) are made here, before
  // the child registers its handler, so they outlive it; the watchdog is first used after.
  { const ::httplib::Client warm(quick.base_url()); }
  CHECK(in_child(
            30s,
            [&] {
              // Registered before the watchdog exists, so it runs after any static made later
              // is destroyed: an attempt made there must still end on its deadline.
              std::atexit(attempt_while_exiting);
              return answered(quick.base_url()) ? 0 : 1;
            },
            /*run_exit_handlers=*/true) == "exit " + std::to_string(exited_after_attempt));
}

#if defined(FAILOVER_TEST_REPLACE_NEW)
TEST_CASE("a watch whose add() throws is not left in the watchdog's list") {
  using failover::http::socket_watch;
  using failover::http::watch_verdict;
  // Each allocation add() makes (starting the thread, growing the list) fails in turn.
  for (int n = 1; n <= 4; ++n) {
    INFO("allocation " << n << " fails");
    failover::http::socket_watchdog watchdog;
    socket_watch w;
    w.expiry = steady::now() - 1s;  // were it watched, the first look would give it a verdict
    bool threw = false;
    failing_allocation = n;
    try {
      watchdog.add(w);
    } catch (const std::bad_alloc&) {
      threw = true;
    } catch (const std::system_error&) {
      threw = true;
    }
    failing_allocation = 0;
    if (!threw) {
      watchdog.remove(w);
      continue;
    }
    // Another watch, added as it should be, shows when the watchdog has looked at its list.
    socket_watch probe;
    probe.expiry = steady::now() - 1s;
    watchdog.add(probe);
    const auto until = steady::now() + 5s;
    while (watchdog.remove(probe).verdict == watch_verdict::none && steady::now() < until) {
      std::this_thread::sleep_for(5ms);
      watchdog.add(probe);
    }
    CHECK(watchdog.remove(w).verdict == watch_verdict::none);
  }
}

#if defined(FAILOVER_TEST_CURL)
TEST_CASE("curl: an allocation failing in a callback is rethrown, and the handle is not reused") {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  // Headers and a 256 KiB body in pieces: the header and body callbacks run many times, and
  // the body grows (allocates) as it comes.
  raw_server server([](raw_connection& c) {
    if (!c.send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-One: 1\r\n"
                "Content-Length: 262144\r\nConnection: close\r\n\r\n"))
      return;
    for (int i = 0; i < 16 && c.send(std::string(16 << 10, 'b'));) ++i;
  });
  auto post = [&](failover::http::curl_endpoint& endpoint) {
    const failover::attempt_context ctx;
    return endpoint.post(ctx, "/chat/completions", "{}");
  };
  long needed = 0;  // allocations of one whole attempt
  {
    failover::http::curl_endpoint endpoint(server.base_url(), {500ms, 5s});
    const long before = allocations;
    REQUIRE(post(endpoint));
    needed = allocations - before;
  }
  int thrown = 0;
  for (long n = 1; n <= needed; ++n) {
    INFO("allocation " << n << " of " << needed << " fails");
    failover::http::curl_endpoint endpoint(server.base_url(), {500ms, 5s});
    failing_allocation = static_cast<int>(n);
    bool threw = false;
    try {
      static_cast<void>(post(endpoint));
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    failing_allocation = 0;
    if (!threw) continue;
    ++thrown;
    CHECK(endpoint.handles() == 0);  // the handle of the broken transfer was not kept
    const auto again = post(endpoint);
    REQUIRE(again);
    CHECK(again.value().body.size() == std::size_t{262144});
  }
  CHECK(thrown > 0);
}
#endif
#endif  // FAILOVER_TEST_REPLACE_NEW

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define FAILOVER_TEST_ASAN_UBSAN 1
#endif
#endif
#if !defined(__SANITIZE_ADDRESS__) && !defined(FAILOVER_TEST_ASAN_UBSAN)
// Not under ASan/UBSan: their runtimes need descriptors of their own (symbolizing a report, for
// one), so a child starved of descriptors reports their failure, not the adapter's.
TEST_CASE("an attempt whose socket cannot be watched fails at once, naming the cause") {
  raw_server slow(drips());
  const std::string ended = in_child(30s, [&] {
    // Every descriptor but one taken: the client's socket gets the last, its dup none.
    rlimit few{64, 64};
    if (::setrlimit(RLIMIT_NOFILE, &few) != 0) return 1;
    int last = -1;
    while (true) {
      const int fd = ::open("/dev/null", O_RDONLY);
      if (fd < 0) break;
      last = fd;
    }
    if (last < 0) return 1;
    ::close(last);
    failover::http::httplib_endpoint endpoint(slow.base_url(), {500ms, 10s});
    failover::attempt_context ctx;
    ctx.remaining = 300ms;
    const auto start = steady::now();
    const auto sent = endpoint.post(ctx, "/chat/completions", "{}");
    if (sent) return 2;
    if (sent.failure().transport != failover::transport_error::other) return 3;
    if (sent.failure().message.find("could not be watched (dup: Too many open files)") ==
        std::string::npos)
      return 4;
    return ms_since(start) < 300 ? 0 : 5;  // at once: not at the deadline, nor past it
  });
  CHECK(ended == "exit 0");
}
#endif

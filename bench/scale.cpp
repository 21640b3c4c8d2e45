// Many calls in flight at once: N concurrent POSTs, each held by a loopback server for --hold-ms
// and then answered, made by one mode per child process, so that each mode's peak memory is its
// own.
//
// Modes:
//   bare        the floor: one I/O thread, an io_context and a hand-written curl-multi socket loop,
//               no failover at all; connections kept alive, as any client of one host wants
//   bare-fresh  the same loop with a new connection per call, closed after it (FRESH_CONNECT,
//               FORBID_REUSE): shows what libcurl's connection cache costs at this scale
//   threads     what users do today: a fallback_chain whose entry calls the blocking
//               curl_endpoint, run() on a pool of --threads threads
//   failover    the same chain on the Asio driver (async_run) with its entry an async POST on
//               the curl-multi adapter, one I/O thread, connections kept as in bare
//   failover-fresh  the same with a new connection per call, as bare-fresh: the async layer's
//               own cost, without libcurl's connection-cache scans
//   adapter, adapter-fresh  the curl-multi adapter's async_post alone, no chain: splits the
//               async layer's cost into the adapter's and the driver's
//
// Per mode: peak RSS above the RSS before the calls, per call in flight (the HTTP handles
// included); the client's CPU seconds per 1000 calls; and p50/p99 of (completion seen by the
// caller - answer sent by the server), from the server's x-sent-ns header. The server runs in the
// parent and the calls in a child, so the child's getrusage() is the client's CPU alone, and each
// process needs one descriptor per call rather than two. steady_clock is CLOCK_MONOTONIC, one clock
// for every process on the machine, so the two times compare.
//
// With two CPUs or more the server is pinned to one CPU and the client to another
// (sched_setaffinity; --no-pin leaves both to the scheduler): a real server's CPU does not compete
// with its client's, and the figure measured is the client's own delay. Unpinned on a small
// machine, the two processes take turns on the same core, and the added latency then counts the
// server's work between the answers.
//
// --samples=PATH: each event-loop mode writes PATH.MODE, one line per answered call, "x-sent-ns
// seen-ns", in the order seen: whether the added latency grows through the burst (a client that
// cannot keep up with the answers) or is spread evenly.
//
// Usage: failover_scale [--calls=10000] [--hold-ms=2000] [--threads=1000]
//                       [--mode=bare,bare-fresh,threads,adapter,adapter-fresh,failover,...]
//                       [--server-threads=1] [--no-pin] [--samples=PATH]
//        failover_scale --serve=SECONDS [--hold-ms=2000]   (the server alone, for a profiler)
#include <curl/curl.h>
#include <failover/adapters/curl.hpp>
#include <failover/adapters/curl_multi.hpp>
#include <failover/drivers/asio.hpp>
#include <failover/fallback_chain.hpp>
#include <failover/testing/loopback_server.hpp>

#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct params {
  std::string url;  // the loopback server's base URL
  std::size_t calls = 10000;
  long hold_ms = 2000;
  std::size_t threads = 1000;
  int client_cpu = -1;  // the CPU the child is pinned to; -1: not pinned
  std::string samples;  // --samples=PATH: each mode writes PATH.MODE
};

// The first two CPUs this process may run on (server, client), or nothing with fewer than two.
std::optional<std::pair<int, int>> two_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return std::nullopt;
  int found[2] = {-1, -1};
  int n = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE && n < 2; ++cpu)
    if (CPU_ISSET(cpu, &set)) found[n++] = cpu;
  if (n < 2) return std::nullopt;
  return std::make_pair(found[0], found[1]);
}

// Pins the calling process (and the threads it starts from now on) to `cpu`.
void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0)
    throw std::runtime_error("sched_setaffinity to CPU " + std::to_string(cpu) + " failed");
}

// What one mode measured, in the child.
struct record {
  std::string mode;
  std::size_t calls = 0;
  std::size_t ok = 0;         // 200 answers with their x-sent-ns
  std::size_t in_flight = 0;  // calls open at once: all of them, or one per thread
  double seconds = 0;
  long rss_base_kib = 0;
  long rss_peak_kib = 0;
  double cpu_seconds = 0;              // user + system, the client process only
  std::vector<std::int64_t> added_ns;  // completion seen - answer sent, per answered call
  std::int64_t start_ns = 0;           // when the first call was started
  std::int64_t last_received_ns = 0;   // when the server had the last request (x-received-ns)
};

const std::string request_body =
    R"({"model":"loopback","messages":[{"role":"user","content":"Say ok."}],"max_tokens":8})";

// (x-sent-ns, completion seen) per answered call, in the order seen, for --samples.
// Kept only with --samples (reserved before the calls, so the default run does none of this).
bool keep_answer_times = false;
std::vector<std::pair<std::int64_t, std::int64_t>> answer_times;
std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
      .count();
}

// VmRSS or VmHWM from /proc/self/status, in KiB.
long status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(key);
  while (std::getline(in, line))
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':')
      return std::strtol(line.c_str() + n + 1, nullptr, 10);
  return 0;
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return s(u.ru_utime) + s(u.ru_stime);
}

// The descriptor limit raised to `need` (the soft limit, up to the hard one), or a clear failure.
void raise_fd_limit(std::size_t need, const char* why) {
  rlimit l{};
  if (getrlimit(RLIMIT_NOFILE, &l) != 0)
    throw std::runtime_error("getrlimit(RLIMIT_NOFILE) failed");
  if (l.rlim_cur >= need) return;
  if (l.rlim_max < need) {
    std::ostringstream msg;
    msg << why << " needs " << need << " file descriptors in one process, but the hard limit "
        << "(ulimit -Hn) is " << l.rlim_max << ": raise it (limits.conf, or ulimit -Hn as root) "
        << "or lower --calls";
    throw std::runtime_error(msg.str());
  }
  l.rlim_cur = need;
  if (setrlimit(RLIMIT_NOFILE, &l) != 0)
    throw std::runtime_error("setrlimit(RLIMIT_NOFILE) failed");
}

// The value of header `name` ("x-sent-ns:") in one header line, if that is the line.
std::optional<std::int64_t> ns_header(std::string_view name, const char* data, std::size_t size) {
  const std::size_t n = name.size();
  if (size <= n) return std::nullopt;
  for (std::size_t i = 0; i < n; ++i)
    if (std::tolower(static_cast<unsigned char>(data[i])) != name[i]) return std::nullopt;
  return std::strtoll(std::string(data + n, size - n).c_str(), nullptr, 10);
}

// ---- bare: the floor. One io_context on this thread, curl's multi interface told of socket
// readiness and timeouts by Asio (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION,
// curl_multi_socket_action), N easy handles added at once. No failover: no chain, no retry, no
// classification.
class bare_loop {
 public:
  explicit bare_loop(std::size_t calls) : done_at_(calls) {
    multi_ = curl_multi_init();
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &bare_loop::on_socket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &bare_loop::on_timer);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    // Every connection stays in the cache for the next call, as a keep-alive client wants: the
    // default cap (4 per handle in the multi) shrinks as handles finish, and closing connections
    // mid-run would cost this loop work that no client of one host asks for.
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, static_cast<long>(calls));
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    headers_ = curl_slist_append(headers_, "Expect:");
  }
  bare_loop(const bare_loop&) = delete;
  bare_loop& operator=(const bare_loop&) = delete;
  ~bare_loop() {
    for (auto& t : transfers_)
      if (t.easy != nullptr) {
        curl_multi_remove_handle(multi_, t.easy);
        curl_easy_cleanup(t.easy);
      }
    curl_multi_cleanup(multi_);
    curl_slist_free_all(headers_);
    // Descriptors curl still had open are curl's to close, not Asio's.
    for (auto& s : sockets_) s.second->d.release();
  }

  void run(const params& p, record& r, bool fresh) {
    const std::string url = p.url + "/v1/chat/completions";
    transfers_.resize(p.calls);
    for (auto& t : transfers_) {
      t.easy = curl_easy_init();
      curl_easy_setopt(t.easy, CURLOPT_URL, url.c_str());
      curl_easy_setopt(t.easy, CURLOPT_POSTFIELDS, request_body.c_str());
      curl_easy_setopt(t.easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(request_body.size()));
      curl_easy_setopt(t.easy, CURLOPT_HTTPHEADER, headers_);
      curl_easy_setopt(t.easy, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(t.easy, CURLOPT_TIMEOUT_MS, p.hold_ms + 60000L);
      curl_easy_setopt(t.easy, CURLOPT_WRITEFUNCTION, &bare_loop::on_body);
      curl_easy_setopt(t.easy, CURLOPT_WRITEDATA, &t);
      curl_easy_setopt(t.easy, CURLOPT_HEADERFUNCTION, &bare_loop::on_header);
      curl_easy_setopt(t.easy, CURLOPT_HEADERDATA, &t);
      curl_easy_setopt(t.easy, CURLOPT_PRIVATE, &t);
      if (fresh) {  // a connection of its own, closed after the answer: no cache lookups
        curl_easy_setopt(t.easy, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(t.easy, CURLOPT_FORBID_REUSE, 1L);
      }
      curl_multi_add_handle(multi_, t.easy);
    }
    record_ = &r;
    io_.run();
  }

 private:
  struct transfer {
    CURL* easy = nullptr;
    std::string body;
    std::int64_t sent_ns = 0;
    std::int64_t received_ns = 0;
  };
  struct watched {
    explicit watched(asio::io_context& io, curl_socket_t fd) : d(io, fd) {}
    asio::posix::stream_descriptor d;
    int want = 0;  // CURL_POLL_IN / OUT / INOUT
    bool reading = false, writing = false, gone = false;
  };

  static std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
    static_cast<transfer*>(user)->body.append(data, size * n);
    return size * n;
  }
  static std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
    auto& t = *static_cast<transfer*>(user);
    if (auto sent = ns_header("x-sent-ns:", data, size * n)) t.sent_ns = *sent;
    if (auto in = ns_header("x-received-ns:", data, size * n)) t.received_ns = *in;
    return size * n;
  }

  static int on_socket(CURL*, curl_socket_t fd, int what, void* self, void*) {
    auto& loop = *static_cast<bare_loop*>(self);
    if (what == CURL_POLL_REMOVE) {
      auto it = loop.sockets_.find(fd);
      if (it != loop.sockets_.end()) {
        it->second->gone = true;
        it->second->d.release();  // cancels its waits; curl closes the descriptor itself
        loop.sockets_.erase(it);
      }
      return 0;
    }
    auto& w = loop.sockets_[fd];
    if (!w) w = std::make_shared<watched>(loop.io_, fd);
    w->want = what;
    loop.arm(w);
    return 0;
  }

  static int on_timer(CURLM*, long ms, void* self) {
    auto& loop = *static_cast<bare_loop*>(self);
    if (ms < 0) {
      loop.timer_.cancel();
      return 0;
    }
    loop.timer_.expires_after(std::chrono::milliseconds(ms));
    loop.timer_.async_wait([&loop](const asio::error_code& ec) {
      if (!ec) loop.act(CURL_SOCKET_TIMEOUT, 0);
    });
    return 0;
  }

  void arm(const std::shared_ptr<watched>& w) {
    if ((w->want & CURL_POLL_IN) && !w->reading) {
      w->reading = true;
      w->d.async_wait(asio::posix::descriptor_base::wait_read,
                      [this, w](const asio::error_code& ec) { ready(w, ec, CURL_CSELECT_IN); });
    }
    if ((w->want & CURL_POLL_OUT) && !w->writing) {
      w->writing = true;
      w->d.async_wait(asio::posix::descriptor_base::wait_write,
                      [this, w](const asio::error_code& ec) { ready(w, ec, CURL_CSELECT_OUT); });
    }
  }

  void ready(const std::shared_ptr<watched>& w, const asio::error_code& ec, int which) {
    (which == CURL_CSELECT_IN ? w->reading : w->writing) = false;
    if (ec || w->gone) return;
    act(w->d.native_handle(), which);
    if (!w->gone) arm(w);
  }

  void act(curl_socket_t fd, int which) {
    int running = 0;
    curl_multi_socket_action(multi_, fd, which, &running);
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi_, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      const std::int64_t seen = steady_ns();
      transfer* t = nullptr;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
      long status = 0;
      curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      if (m->data.result == CURLE_OK && status == 200 && t->sent_ns != 0) {
        ++record_->ok;
        record_->added_ns.push_back(seen - t->sent_ns);
        if (keep_answer_times) answer_times.emplace_back(t->sent_ns, seen);
        record_->last_received_ns = std::max(record_->last_received_ns, t->received_ns);
      }
      curl_multi_remove_handle(multi_, t->easy);
      curl_easy_cleanup(t->easy);  // its connection stays in the multi's cache
      t->easy = nullptr;
      std::string().swap(t->body);
      if (++done_ == done_at_) io_.stop();
    }
  }

  asio::io_context io_;
  asio::steady_timer timer_{io_};
  CURLM* multi_ = nullptr;
  curl_slist* headers_ = nullptr;
  std::vector<transfer> transfers_;
  std::unordered_map<curl_socket_t, std::shared_ptr<watched>> sockets_;
  record* record_ = nullptr;
  std::size_t done_ = 0;
  std::size_t done_at_;
};

void run_bare(const params& p, record& r, bool fresh) {
  bare_loop loop(p.calls);
  r.in_flight = p.calls;
  r.rss_base_kib = status_kib("VmRSS");
  const double cpu0 = cpu_seconds();
  const auto t0 = clock_type::now();
  r.start_ns = steady_ns();
  loop.run(p, r, fresh);
  r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  r.cpu_seconds = cpu_seconds() - cpu0;
  r.rss_peak_kib = status_kib("VmHWM");
}

// ---- threads: the blocking API as users run it today. One chain, one entry calling the blocking
// curl adapter (a shared curl_endpoint, whose pool grows to a handle per thread), run() on a pool
// of --threads threads that take calls until N are done.
void run_threads(const params& p, record& r) {
  using failover::http::response;
  r.in_flight = std::min(p.threads, p.calls);
  std::vector<std::int64_t> added(p.calls, -1), received(p.calls, 0);
  r.rss_base_kib = status_kib("VmRSS");
  const double cpu0 = cpu_seconds();
  const auto t0 = clock_type::now();
  r.start_ns = steady_ns();
  {
    failover::http::curl_endpoint endpoint(p.url);
    failover::fallback_chain<response()> chain;
    chain.add("loopback",
              [&endpoint](const failover::attempt_context& ctx) -> failover::outcome<response> {
                failover::outcome<response> o =
                    endpoint.post(ctx, "/v1/chat/completions", request_body);
                if (o && !(*o).ok()) return failover::http::status_failure(*o);
                return o;
              });
    std::atomic<std::size_t> next{0};
    std::vector<std::thread> pool;
    pool.reserve(r.in_flight);
    for (std::size_t i = 0; i < r.in_flight; ++i)
      pool.emplace_back([&] {
        for (std::size_t call = next++; call < p.calls; call = next++) {
          const failover::result<response> answer = chain.run();
          const std::int64_t seen = steady_ns();
          if (!answer) continue;
          const std::string_view sent = answer->header("x-sent-ns");
          if (!sent.empty())
            added[call] = seen - std::strtoll(std::string(sent).c_str(), nullptr, 10);
          received[call] =
              std::strtoll(std::string(answer->header("x-received-ns")).c_str(), nullptr, 10);
        }
      });
    for (auto& t : pool) t.join();
  }
  r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  r.cpu_seconds = cpu_seconds() - cpu0;
  r.rss_peak_kib = status_kib("VmHWM");
  for (std::int64_t in : received) r.last_received_ns = std::max(r.last_received_ns, in);
  for (std::int64_t a : added)
    if (a >= 0) {
      ++r.ok;
      r.added_ns.push_back(a);
    }
}

// ---- adapter and failover: the curl-multi adapter on one io_context run by this thread, like
// for like with bare: the same MAXCONNECTS (every connection kept), the same overall transfer
// timeout, the same body, measured the same way (rss_base_kib before the first call, the
// completion time taken in the completion handler, x-sent-ns from the response). `adapter` calls
// curl_multi_endpoint::async_post directly; `failover` makes each call through a fallback_chain on
// the Asio driver (async_run with a plain callback) whose one entry is that async_post. So
// bare → adapter is the adapter's cost, and adapter → failover the driver's and the machine's.
class multi_calls {
 public:
  multi_calls(const params& p, record& r, bool fresh)
      : p_(p), r_(r), added_(p.calls, -1), received_(p.calls, 0), multi_(io_, setup(fresh)) {
    r.in_flight = p.calls;
    curl_multi_setopt(multi_.native_handle(), CURLMOPT_MAXCONNECTS, static_cast<long>(p.calls));
    failover::http::timeouts wanted;  // bare sets only CURLOPT_TIMEOUT_MS: the same here
    wanted.connect = wanted.read = std::chrono::milliseconds(p.hold_ms + 60000L);
    endpoint_.emplace(multi_, p.url, wanted);
  }

  // Starts every call with `start(call)`, runs the loop until all are done, and records.
  template <class Start>
  void run(Start start) {
    r_.rss_base_kib = status_kib("VmRSS");
    const double cpu0 = cpu_seconds();
    const auto t0 = clock_type::now();
    r_.start_ns = steady_ns();
    for (std::size_t call = 0; call < p_.calls; ++call) start(call);
    io_.run();
    r_.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    r_.cpu_seconds = cpu_seconds() - cpu0;
    r_.rss_peak_kib = status_kib("VmHWM");
    for (std::int64_t in : received_) r_.last_received_ns = std::max(r_.last_received_ns, in);
    for (std::int64_t a : added_)
      if (a >= 0) {
        ++r_.ok;
        r_.added_ns.push_back(a);
      }
  }

  // What the caller does with an answer: the time it saw it, and the server's two stamps.
  void answered(std::size_t call, const failover::http::response& answer) {
    const std::int64_t seen = steady_ns();
    const std::string_view sent = answer.header("x-sent-ns");
    if (!sent.empty()) added_[call] = seen - std::strtoll(std::string(sent).c_str(), nullptr, 10);
    if (keep_answer_times && !sent.empty()) answer_times.emplace_back(seen - added_[call], seen);
    received_[call] =
        std::strtoll(std::string(answer.header("x-received-ns")).c_str(), nullptr, 10);
  }

  asio::io_context& io() { return io_; }
  failover::http::curl_multi_endpoint& endpoint() { return *endpoint_; }

 private:
  static std::function<void(CURL*)> setup(bool fresh) {
    if (!fresh) return {};
    // As bare-fresh: set once on each new easy handle, and kept for all of its transfers.
    return [](CURL* easy) {
      curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
      curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
    };
  }

  const params& p_;
  record& r_;
  std::vector<std::int64_t> added_, received_;
  asio::io_context io_;  // as bare's
  failover::http::curl_multi multi_;
  std::optional<failover::http::curl_multi_endpoint> endpoint_;
};

void run_adapter(const params& p, record& r, bool fresh) {
  using failover::http::response;
  multi_calls calls(p, r, fresh);
  calls.run([&calls](std::size_t call) {
    calls.endpoint().async_post(failover::attempt_context{}, "/v1/chat/completions", request_body,
                                [&calls, call](failover::outcome<response> o) {
                                  if (o && (*o).ok()) calls.answered(call, *o);
                                });
  });
}

void run_failover(const params& p, record& r, bool fresh) {
  using failover::http::response;
  multi_calls calls(p, r, fresh);
  failover::fallback_chain<response()> chain;
  chain.add("loopback", [&calls](const failover::attempt_context& ctx,
                                 failover::completion<response> done) {
    calls.endpoint().async_post(ctx, "/v1/chat/completions", request_body,
                                [done = std::move(done)](failover::outcome<response> o) mutable {
                                  if (o && !(*o).ok())
                                    return done(failover::http::status_failure(*o));
                                  done(std::move(o));
                                });
  });
  calls.run([&calls, &chain](std::size_t call) {
    failover::async_run(chain, calls.io(), [&calls, call](failover::result<response> answer) {
      if (answer) calls.answered(call, *answer);
    });
  });
}

std::int64_t percentile(std::vector<std::int64_t>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(q * static_cast<double>(v.size()) + 0.999999);
  return v[std::min(v.size(), std::max<std::size_t>(rank, 1)) - 1];
}

// The child: one mode, its record on stdout as "key=value" words for the parent.
int child(const std::string& mode, const params& p) {
  signal(SIGPIPE, SIG_IGN);
  const std::size_t need =
      mode == "threads" ? 3 * std::min(p.threads, p.calls) + 256 : p.calls + 256;
  raise_fd_limit(need, ("--mode=" + mode).c_str());
  curl_global_init(CURL_GLOBAL_DEFAULT);
  record r;
  r.mode = mode;
  r.calls = p.calls;
  r.added_ns.reserve(p.calls);
  keep_answer_times = !p.samples.empty() && mode != "threads";
  if (keep_answer_times) answer_times.reserve(p.calls);
  if (mode == "bare" || mode == "bare-fresh") {
    run_bare(p, r, mode == "bare-fresh");
  } else if (mode == "threads") {
    run_threads(p, r);
  } else if (mode == "failover") {
    run_failover(p, r, false);
  } else if (mode == "failover-fresh") {
    run_failover(p, r, true);
  } else if (mode == "adapter" || mode == "adapter-fresh") {
    run_adapter(p, r, mode == "adapter-fresh");
  } else {
    std::fprintf(stderr, "failover_scale: unknown mode '%s'\n", mode.c_str());
    return 2;
  }
  std::printf(
      "ok=%zu in_flight=%zu seconds=%.6f rss_base_kib=%ld rss_peak_kib=%ld cpu=%.6f "
      "p50_ns=%lld p99_ns=%lld max_ns=%lld requests_in_s=%.6f\n",
      r.ok, r.in_flight, r.seconds, r.rss_base_kib, r.rss_peak_kib, r.cpu_seconds,
      static_cast<long long>(percentile(r.added_ns, 0.50)),
      static_cast<long long>(percentile(r.added_ns, 0.99)),
      static_cast<long long>(percentile(r.added_ns, 1.0)),
      static_cast<double>(r.last_received_ns - r.start_ns) / 1e9);
  curl_global_cleanup();
  if (keep_answer_times) {
    const std::string path = p.samples + "." + mode;
    if (FILE* o = std::fopen(path.c_str(), "w")) {
      for (const auto& x : answer_times)
        std::fprintf(o, "%lld %lld\n", static_cast<long long>(x.first),
                     static_cast<long long>(x.second));
      std::fclose(o);
    }
  }
  return 0;
}

// Runs this binary again as a child for one mode and returns its record line ("" if it failed).
std::string spawn(const std::string& mode, const params& p, int& exit_code) {
  int out[2];
  if (pipe(out) != 0) throw std::runtime_error("pipe failed");
  const std::vector<std::string> args = {"failover_scale",
                                         "--child",
                                         "--mode=" + mode,
                                         "--url=" + p.url,
                                         "--calls=" + std::to_string(p.calls),
                                         "--hold-ms=" + std::to_string(p.hold_ms),
                                         "--threads=" + std::to_string(p.threads),
                                         "--samples=" + p.samples};
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    if (p.client_cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(p.client_cpu, &set);
      if (sched_setaffinity(0, sizeof set, &set) != 0) _exit(126);
    }
    dup2(out[1], 1);
    close(out[0]);
    close(out[1]);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(out[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<std::size_t>(n));
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code == 0 ? text : std::string();
}

double field(const std::string& line, const std::string& key) {
  const std::size_t at = line.find(key + "=");
  if (at == std::string::npos) return 0;
  return std::strtod(line.c_str() + at + key.size() + 1, nullptr);
}

int parent(const std::vector<std::string>& modes, params p, std::size_t server_threads,
           int server_cpu) {
  signal(SIGPIPE, SIG_IGN);
  raise_fd_limit(p.calls + 256, "the loopback server");  // one descriptor per open request
  failover::testing::loopback_reply reply;
  reply.hold = std::chrono::milliseconds(p.hold_ms);
  failover::testing::loopback_options options;
  options.threads = server_threads;
  failover::testing::loopback_server server(reply, options);
  p.url = server.url();
  std::printf("%zu calls, each held %ld ms by the server; threads mode: %zu threads\n", p.calls,
              p.hold_ms, p.threads);
  double load[3] = {0, 0, 0};
  const bool have_load = getloadavg(load, 3) == 3;
  if (server_cpu >= 0)
    std::printf("pinned: server on CPU %d, client on CPU %d", server_cpu, p.client_cpu);
  else
    std::printf("not pinned (--no-pin, or fewer than two CPUs)");
  if (have_load) std::printf("; load average %.2f %.2f %.2f", load[0], load[1], load[2]);
  std::printf("\n\n");
  std::printf("%-14s %6s %9s %8s %8s %10s %10s %9s %9s %9s %8s\n", "mode", "ok", "in flight",
              "seconds", "sent in", "KiB/call", "CPU s/1000", "p50 ms", "p99 ms", "max ms",
              "srv peak");
  std::vector<std::string> json;
  int status = 0;  // 1 once a mode failed or left a call unanswered
  for (const std::string& mode : modes) {
    server.reset_peak();
    double mode_load = -1;  // the 1-minute load average as this mode starts
    if (getloadavg(load, 1) == 1) mode_load = load[0];
    int code = 0;
    const std::string line = spawn(mode, p, code);
    // The next mode starts once the server has closed this one's connections.
    for (int i = 0; i < 3000 && server.open() > 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (line.empty()) {
      std::printf("%-14s failed (exit %d)\n", mode.c_str(), code);
      status = 1;
      continue;
    }
    if (field(line, "ok") != static_cast<double>(p.calls)) status = 1;
    const double in_flight = field(line, "in_flight");
    const double kib = (field(line, "rss_peak_kib") - field(line, "rss_base_kib")) / in_flight;
    const double cpu_per_1000 = field(line, "cpu") / static_cast<double>(p.calls) * 1000;
    const double ms = 1e-6;
    std::printf("%-14s %6.0f %9.0f %8.2f %8.2f %10.1f %10.4f %9.3f %9.3f %9.3f %8zu\n",
                mode.c_str(), field(line, "ok"), in_flight, field(line, "seconds"),
                field(line, "requests_in_s"), kib, cpu_per_1000, field(line, "p50_ns") * ms,
                field(line, "p99_ns") * ms, field(line, "max_ns") * ms, server.peak_held());
    char j[768];
    std::snprintf(j, sizeof j,
                  R"({"mode":"%s","calls":%zu,"ok":%.0f,"hold_ms":%ld,"threads":%zu,)"
                  R"("in_flight":%.0f,"seconds":%.3f,"rss_base_kib":%.0f,"rss_peak_kib":%.0f,)"
                  R"("kib_per_in_flight_call":%.2f,"cpu_s":%.4f,"cpu_s_per_1000_calls":%.5f,)"
                  R"("p50_added_ms":%.4f,"p99_added_ms":%.4f,"max_added_ms":%.4f,)"
                  R"("requests_in_s":%.3f,"server_peak_held":%zu,"server_cpu":%d,)"
                  R"("client_cpu":%d,"load_1min":%.2f})",
                  mode.c_str(), p.calls, field(line, "ok"), p.hold_ms, p.threads, in_flight,
                  field(line, "seconds"), field(line, "rss_base_kib"), field(line, "rss_peak_kib"),
                  kib, field(line, "cpu"), cpu_per_1000, field(line, "p50_ns") * ms,
                  field(line, "p99_ns") * ms, field(line, "max_ns") * ms,
                  field(line, "requests_in_s"), server.peak_held(), server_cpu, p.client_cpu,
                  mode_load);
    json.emplace_back(j);
  }
  std::printf("\n");
  for (const auto& j : json) std::printf("%s\n", j.c_str());
  if (status != 0)
    std::fprintf(stderr, "failover_scale: a mode failed or left calls without a 200 answer\n");
  return status;
}

// The server alone for `seconds`, its URL on stdout: a profiler runs one mode against it as
// `failover_scale --child --mode=X --url=URL --calls=N --hold-ms=H` (valgrind cannot follow the
// parent's re-exec of /proc/self/exe).
int serve(const params& p, std::size_t server_threads, long seconds) {
  signal(SIGPIPE, SIG_IGN);
  raise_fd_limit(p.calls + 256, "the loopback server");
  failover::testing::loopback_reply reply;
  reply.hold = std::chrono::milliseconds(p.hold_ms);
  failover::testing::loopback_options options;
  options.threads = server_threads;
  failover::testing::loopback_server server(reply, options);
  std::printf("%s\n", server.url().c_str());
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    params p;
    std::string mode = "bare,bare-fresh,threads,adapter,adapter-fresh,failover,failover-fresh";
    bool is_child = false;
    long serve_seconds = 0;
    std::size_t server_threads = 1;
    bool pin = true;
    auto number = [](const std::string& arg, const char* name) {
      char* end = nullptr;
      const long long v = std::strtoll(arg.c_str() + std::strlen(name) + 1, &end, 10);
      if (*end != '\0' || v <= 0)
        throw std::invalid_argument(std::string(name) + " must be a positive number");
      return v;
    };
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto is = [&a](const char* name) { return a.rfind(std::string(name) + "=", 0) == 0; };
      if (a == "--child")
        is_child = true;
      else if (a == "--no-pin")
        pin = false;
      else if (is("--calls"))
        p.calls = static_cast<std::size_t>(number(a, "--calls"));
      else if (is("--hold-ms"))
        p.hold_ms = static_cast<long>(number(a, "--hold-ms"));
      else if (is("--threads"))
        p.threads = static_cast<std::size_t>(number(a, "--threads"));
      else if (is("--server-threads"))
        server_threads = static_cast<std::size_t>(number(a, "--server-threads"));
      else if (is("--mode"))
        mode = a.substr(7);
      else if (is("--serve"))
        serve_seconds = static_cast<long>(number(a, "--serve"));
      else if (is("--url"))
        p.url = a.substr(6);
      else if (is("--samples"))
        p.samples = a.substr(10);
      else
        throw std::invalid_argument("unknown argument '" + a +
                                    "' (see the top of bench/scale.cpp)");
    }
    if (is_child) return child(mode, p);
    if (serve_seconds > 0) return serve(p, server_threads, serve_seconds);
    std::vector<std::string> modes;
    std::stringstream list(mode);
    for (std::string m; std::getline(list, m, ',');) modes.push_back(m);
    int server_cpu = -1;
    if (const auto cpus = pin ? two_cpus() : std::nullopt) {
      server_cpu = cpus->first;
      p.client_cpu = cpus->second;
      pin_to(server_cpu);  // before the server's threads start: they inherit it
    }
    return parent(modes, p, server_threads, server_cpu);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "failover_scale: %s\n", e.what());
    return 1;
  }
}

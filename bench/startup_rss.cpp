// startup_rss: spawns a server, measures the time from spawn to its first 200 on a readiness
// URL (polled every --poll-ms on a fresh connection), then its resident memory once idle.
//
//   startup_rss --port P [--path /readyz] [--poll-ms 1] [--timeout-ms 20000]
//               [--settle-ms 1000] [--stop-timeout-ms 10000] [--log FILE] -- COMMAND ARGS...
//
// RSS is VmRSS from /proc/PID/status, summed over the process and its descendants (nginx's
// master + worker; mesh is one process), read at readiness and again after --settle-ms idle;
// with it, once idle, RssAnon (the process's own memory) and Pss (shared pages divided).
// Then SIGTERM, and the time until the process exits (SIGKILL after --stop-timeout-ms).
// The answer is one JSON object on stdout; exit status 1 when the server never got ready.
// POSIX only: g++ -std=c++20 -O2.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Status code of GET path on 127.0.0.1:port, or -1 (refused, reset, timed out).
int probe(unsigned short port, const std::string& path, int timeout_ms) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int status = -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    const std::string request =
        "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buffer[64];
      std::size_t got = 0;
      while (got < 12) {
        const ssize_t n = recv(fd, buffer + got, sizeof buffer - 1 - got, 0);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
      }
      buffer[got] = 0;
      if (got >= 12 && std::strncmp(buffer, "HTTP/1.", 7) == 0) status = std::atoi(buffer + 9);
    }
  }
  close(fd);
  return status;
}

// A "Name:   123 kB" field of /proc/PID/status or /proc/PID/smaps_rollup.
long field_kib(pid_t pid, const char* file, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + ":", 0) == 0)
      return std::strtol(line.c_str() + name.size() + 1, nullptr, 10);
  }
  return 0;
}

void descendants(pid_t pid, std::vector<pid_t>& out) {
  out.push_back(pid);
  std::ifstream children("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) +
                         "/children");
  for (pid_t child; children >> child;) descendants(child, out);
}

struct Memory {
  long rss = 0;   // VmRSS: every resident page, shared library pages included
  long anon = 0;  // RssAnon: the process's own heap, stacks and data
  long pss = 0;   // Pss: shared pages divided among the processes that map them
};

Memory tree_memory(pid_t pid) {
  std::vector<pid_t> all;
  descendants(pid, all);
  Memory total;
  for (pid_t p : all) {
    total.rss += field_kib(p, "status", "VmRSS");
    total.anon += field_kib(p, "status", "RssAnon");
    total.pss += field_kib(p, "smaps_rollup", "Pss");
  }
  return total;
}

int thread_count(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  }
  return 0;
}

[[noreturn]] void usage(const char* problem) {
  std::fprintf(stderr,
               "startup_rss: %s\nusage: startup_rss --port P [--path /readyz] [--poll-ms 1] "
               "[--timeout-ms 20000] [--settle-ms 1000] [--stop-timeout-ms 10000] [--log FILE] "
               "-- COMMAND ARGS...\n",
               problem);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  std::string path = "/readyz";
  double poll_ms = 1;
  int timeout_ms = 20000;
  int settle_ms = 1000;
  int stop_timeout_ms = 10000;
  std::string log = "/dev/null";
  int i = 1;
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (i + 1 >= argc) usage(("missing value for " + arg).c_str());
    const std::string value = argv[++i];
    if (arg == "--port")
      port = static_cast<unsigned short>(std::atoi(value.c_str()));
    else if (arg == "--path")
      path = value;
    else if (arg == "--poll-ms")
      poll_ms = std::atof(value.c_str());
    else if (arg == "--timeout-ms")
      timeout_ms = std::atoi(value.c_str());
    else if (arg == "--settle-ms")
      settle_ms = std::atoi(value.c_str());
    else if (arg == "--stop-timeout-ms")
      stop_timeout_ms = std::atoi(value.c_str());
    else if (arg == "--log")
      log = value;
    else
      usage(("unknown option " + arg).c_str());
  }
  if (port == 0 || i >= argc) usage("--port and a command are required");
  if (probe(port, path, 200) != -1) usage("something already answers on that port");

  const auto spawned = Clock::now();
  const pid_t pid = fork();
  if (pid < 0) usage("fork failed");
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execvp(argv[i], argv + i);
    std::perror("exec");
    _exit(127);
  }

  const auto period = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(poll_ms));
  double first_answer_ms = -1;
  double ready_ms = -1;
  int probes = 0;
  int exit_status = -1;
  auto next = spawned;
  while (ms_since(spawned) < timeout_ms) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exit_status = status;
      break;
    }
    const int code = probe(port, path, 1000);
    ++probes;
    if (code > 0 && first_answer_ms < 0) first_answer_ms = ms_since(spawned);
    if (code == 200) {
      ready_ms = ms_since(spawned);
      break;
    }
    next += period;
    std::this_thread::sleep_until(next);
  }

  Memory at_ready, idle;
  int threads = 0;
  if (ready_ms >= 0) {
    at_ready = tree_memory(pid);
    std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms));
    idle = tree_memory(pid);
    threads = thread_count(pid);
  }

  double stop_ms = -1;
  bool killed = false;
  if (exit_status == -1) {
    const auto stopping = Clock::now();
    kill(pid, SIGTERM);
    while (true) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        exit_status = status;
        stop_ms = ms_since(stopping);
        break;
      }
      if (ms_since(stopping) > stop_timeout_ms && !killed) {
        kill(pid, SIGKILL);
        killed = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  const int code = WIFEXITED(exit_status) ? WEXITSTATUS(exit_status) : 128 + WTERMSIG(exit_status);
  std::printf(
      "{\"ready\":%s,\"ready_ms\":%.2f,\"first_answer_ms\":%.2f,\"probes\":%d,"
      "\"rss_ready_kib\":%ld,\"rss_idle_kib\":%ld,\"rss_anon_idle_kib\":%ld,"
      "\"pss_idle_kib\":%ld,\"settle_ms\":%d,\"threads\":%d,"
      "\"stop_ms\":%.1f,\"killed\":%s,\"exit_code\":%d}\n",
      ready_ms >= 0 ? "true" : "false", ready_ms, first_answer_ms, probes, at_ready.rss, idle.rss,
      idle.anon, idle.pss, settle_ms, threads, stop_ms, killed ? "true" : "false", code);
  return ready_ms >= 0 ? 0 : 1;
}

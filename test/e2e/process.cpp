#include "process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace mesh::e2e {
namespace {

std::runtime_error system_error(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

// The child's environment: ours, with `extra` added or replacing.
std::vector<std::string> merged_environment(const Process::Env& extra) {
  std::map<std::string, std::string> variables;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text = *entry;
    const auto equals = text.find('=');
    if (equals != std::string::npos) variables[text.substr(0, equals)] = text.substr(equals + 1);
  }
  for (const auto& [name, value] : extra) variables[name] = value;
  std::vector<std::string> result;
  for (const auto& [name, value] : variables) result.push_back(name + "=" + value);
  return result;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> result;
  for (auto& s : strings) result.push_back(s.data());
  result.push_back(nullptr);
  return result;
}

// Between fork and exec only async-signal-safe calls: this runs in the child.
[[noreturn]] void exec_child(pid_t parent, const char* out, const char* err, char* const* argv,
                             char* const* envp) {
  // Dies with the test: the kernel sends SIGKILL when the forking thread ends.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);
  // Nothing the test holds open (HTTP and database sockets) leaks into the child.
  ::close_range(3, ~0U, 0);
  const int null_fd = ::open("/dev/null", O_RDONLY);
  const int out_fd = ::open(out, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  const int err_fd = ::open(err, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (null_fd < 0 || out_fd < 0 || err_fd < 0) ::_exit(126);
  if (::dup2(null_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) ::_exit(126);
  ::close(null_fd);
  ::close(out_fd);
  ::close(err_fd);
  // Default dispositions and an empty mask, whatever the test process set up.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  ::execve(argv[0], argv, envp);
  ::_exit(127);
}

}  // namespace

bool ExitStatus::exited() const { return WIFEXITED(raw); }
int ExitStatus::exit_code() const { return WEXITSTATUS(raw); }
bool ExitStatus::signaled() const { return WIFSIGNALED(raw); }
int ExitStatus::signal() const { return WTERMSIG(raw); }

std::string ExitStatus::describe() const {
  if (exited()) return "exit " + std::to_string(exit_code());
  if (signaled()) {
    return "killed by signal " + std::to_string(signal()) + " (" + ::strsignal(signal()) + ")";
  }
  return "wait status " + std::to_string(raw);
}

Process::Process(std::string name, std::vector<std::string> argv, const Env& env,
                 const std::filesystem::path& log_dir)
    : name_(std::move(name)),
      stdout_path_(log_dir / (name_ + ".stdout")),
      stderr_path_(log_dir / (name_ + ".stderr")) {
  if (argv.empty()) throw std::invalid_argument("Process: empty argv");
  // Everything the child needs is built before fork: the child may not allocate.
  auto environment = merged_environment(env);
  auto argv_c = c_strings(argv);
  auto envp_c = c_strings(environment);
  const std::string out = stdout_path_.string();
  const std::string err = stderr_path_.string();
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw system_error("fork " + name_);
  if (pid_ == 0) exec_child(parent, out.c_str(), err.c_str(), argv_c.data(), envp_c.data());
}

Process::~Process() {
  if (pid_ > 0 && !status_) kill_now();
}

bool Process::running() {
  if (status_) return false;
  int raw = 0;
  const pid_t reaped = ::waitpid(pid_, &raw, WNOHANG);
  if (reaped == pid_) status_ = ExitStatus{raw};
  if (reaped < 0 && errno != EINTR) status_ = ExitStatus{-1};  // not our child any more
  return !status_;
}

void Process::send(int signal) {
  if (running()) ::kill(pid_, signal);
}

std::optional<ExitStatus> Process::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

ExitStatus Process::kill_now() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    int raw = 0;
    while (::waitpid(pid_, &raw, 0) < 0 && errno == EINTR) {
    }
    status_ = ExitStatus{raw};
  }
  return *status_;
}

std::string Process::log_tail(std::size_t lines) const {
  return "---- " + name_ + " (pid " + std::to_string(pid_) + ") stdout, last lines:\n" +
         tail_file(stdout_path_, lines) + "---- " + name_ + " stderr, last lines:\n" +
         tail_file(stderr_path_, lines);
}

unsigned short free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw system_error("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const auto error = system_error("bind 127.0.0.1:0");
    ::close(fd);
    throw error;
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string tail_file(const std::filesystem::path& path, std::size_t lines) {
  std::ifstream file(path);
  if (!file) return "(cannot read " + path.string() + ")\n";
  std::deque<std::string> last;
  for (std::string line; std::getline(file, line);) {
    last.push_back(std::move(line));
    if (last.size() > lines) last.pop_front();
  }
  std::string result;
  for (const auto& line : last) result += line + "\n";
  return result;
}

std::filesystem::path make_temp_dir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      (std::filesystem::path(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") / (prefix + "XXXXXX"))
          .string();
  if (::mkdtemp(pattern.data()) == nullptr) throw system_error("mkdtemp " + pattern);
  return pattern;
}

}  // namespace mesh::e2e

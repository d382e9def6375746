#pragma once
// Child processes for the multi-process end-to-end test: started with fork/exec, stdout and
// stderr in files, signalled and reaped with deadlines, and killed by the destructor so a failing
// test leaves nothing running (and by the kernel if the test process itself dies).
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mesh::e2e {

// How a child ended, decoded from a waitpid() status.
struct ExitStatus {
  int raw = 0;
  bool exited() const;
  int exit_code() const;  // valid when exited()
  bool signaled() const;
  int signal() const;            // valid when signaled()
  std::string describe() const;  // "exit 0", "killed by signal 9 (Killed)"
};

class Process {
 public:
  using Env = std::vector<std::pair<std::string, std::string>>;

  // Starts argv[0] (a path) with `env` added to (or replacing in) this process's environment.
  // Output goes to <log_dir>/<name>.stdout and <name>.stderr. Throws if the child cannot start.
  Process(std::string name, std::vector<std::string> argv, const Env& env,
          const std::filesystem::path& log_dir);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  const std::filesystem::path& stdout_path() const { return stdout_path_; }
  const std::filesystem::path& stderr_path() const { return stderr_path_; }

  // True until the child has exited (reaps it when it has).
  bool running();
  // The exit status once reaped.
  const std::optional<ExitStatus>& status() const { return status_; }
  // Sends `signal` unless the child was already reaped.
  void send(int signal);
  // Waits up to `timeout` for the child to exit; nullopt if it is still running.
  std::optional<ExitStatus> wait(std::chrono::milliseconds timeout);
  // SIGKILL and reap: the status of the killed child.
  ExitStatus kill_now();

  // The last `lines` lines of the child's stdout and stderr, for failure messages.
  std::string log_tail(std::size_t lines = 40) const;

 private:
  std::string name_;
  std::filesystem::path stdout_path_;
  std::filesystem::path stderr_path_;
  pid_t pid_ = -1;
  std::optional<ExitStatus> status_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
unsigned short free_port();

// The last `lines` lines of a text file ("" if it cannot be read).
std::string tail_file(const std::filesystem::path& path, std::size_t lines);

// A fresh directory under $TMPDIR (or /tmp).
std::filesystem::path make_temp_dir(const std::string& prefix);

}  // namespace mesh::e2e

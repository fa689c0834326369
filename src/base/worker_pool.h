// A fixed set of threads running posted tasks in order of arrival.
//
// Thread-safety: Post may be called from any thread. The destructor runs the
// tasks still queued, then joins; nothing may Post once it has begun.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace conclave {

class WorkerPool {
 public:
  // `threads` workers (at least one), named `name` for profiles.
  WorkerPool(size_t threads, std::string name);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Post(std::function<void()> task);

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  size_t idle_ = 0;                          // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::string name_;
  std::vector<std::thread> threads_;
};

}  // namespace conclave

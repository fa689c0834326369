#include "base/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

namespace conclave {
namespace {

TEST(WorkerPoolTest, RunsEveryTaskBeforeTheDestructorReturns) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(2, "test-pool");
    for (int i = 0; i < 1000; ++i)
      pool.Post([&] { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 1000);
}

TEST(WorkerPoolTest, TasksRunOnTheWorkersNotTheCaller) {
  std::mutex mu;
  std::set<std::thread::id> seen;
  {
    WorkerPool pool(3, "test-pool");
    for (int i = 0; i < 300; ++i) {
      pool.Post([&] {
        std::lock_guard<std::mutex> lock(mu);
        seen.insert(std::this_thread::get_id());
      });
    }
  }
  EXPECT_FALSE(seen.empty());
  EXPECT_LE(seen.size(), 3u);
  EXPECT_FALSE(seen.contains(std::this_thread::get_id()));
}

TEST(WorkerPoolTest, ZeroThreadsMeansOne) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(0, "test-pool");
    pool.Post([&] { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 1);
}

TEST(WorkerPoolTest, ATaskMayPostAnother) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(1, "test-pool");
    pool.Post([&] {
      ran.fetch_add(1);
      pool.Post([&] { ran.fetch_add(1); });
    });
    while (ran.load() < 2)
      std::this_thread::yield();
  }
  EXPECT_EQ(ran.load(), 2);
}

}  // namespace
}  // namespace conclave

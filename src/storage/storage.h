// The storage module's interface: what other modules use of it.
//
//   file_system.h                 the file-system seam (POSIX, and an in-memory one
//                                 that loses or tears unsynced writes on a crash)
//   wal.h                         the write-ahead log every group of a node shares
//   engine.h                      the ordered key-value engine every state machine
//                                 of a node shares (RocksDB, or MemEngine in memory)
//   fault_injection_file_system.h the crashing file system (tests, the simulator)
//
// The WAL's format and replay (wal_format.h, wal_replay.h) are internal.
#pragma once

#include "storage/engine.h"
#include "storage/fault_injection_file_system.h"
#include "storage/file_system.h"
#include "storage/wal.h"

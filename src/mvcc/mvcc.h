// The mvcc module's interface: the etcd keyspace's revisioned store and
// what goes with it.
//
//   kv.h         the data model and requests, with etcd's semantics and errors
//   store.h      the store on a storage engine, and its apply batches
//   snapshot.h   state machine images: chunks, the receiver, install, saved files
//   watch_hub.h  the watch hub that fans committed events out to watchers
//
// The store's key layout (keys.h) and validation are internal.
#pragma once

#include "mvcc/kv.h"
#include "mvcc/snapshot.h"
#include "mvcc/store.h"
#include "mvcc/watch_hub.h"

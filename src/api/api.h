// The api module's interface: the etcd v3 and native gRPC services of a
// member (services.h), and the conversions between etcd's wire messages and
// the store's requests (convert.h) that the etcd state machine applies with.
//
// The individual services, the recipes behind Lock and Election and the
// error table are internal.
#pragma once

#include "api/convert.h"
#include "api/services.h"

#ifndef COREWAL_POOL_IO_H
#define COREWAL_POOL_IO_H
#include <node_api.h>
// Adds writevDatasync to the addon's exports (Linux and other POSIX systems).
void pool_io_init(napi_env env, napi_value exports);
#endif

// flock(2) for the dir store's lock file: Node has no binding for it. Mechanism only: take or test an advisory
// lock on an fd the caller opened and owns (and whose close releases the lock); waiting, retrying and the lock
// file's life cycle are policy, in src/secret/dir-lock.ts. A flock belongs to the open file description, not to
// a PID, so it works across PID namespaces and the kernel drops it when the holder dies.
#include <sys/file.h>

#include "common.h"

namespace kmesh {

namespace {

// flockTry(fd): true if this fd now holds an exclusive lock, false if another open file description holds one
// (EWOULDBLOCK). Never blocks. Any other failure throws a KMESH_ERRNO error naming flock and the fd.
Napi::Value FlockTry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "flockTry(fd: number)");
  const int fd = info[0].As<Napi::Number>().Int32Value();
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return Napi::Boolean::New(env, true);
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    throw ErrnoError(env, errno, "flock", "fd " + std::to_string(fd));
  }
}

}  // namespace

void InitFileLock(Napi::Env env, Napi::Object exports) {
  Napi::Object lock = Napi::Object::New(env);
  lock.Set("flockTry", Napi::Function::New(env, FlockTry, "flockTry"));
  exports.Set("fileLock", lock);
}

}  // namespace kmesh

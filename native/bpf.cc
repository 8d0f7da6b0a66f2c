// libbpf bindings, object/map/program level: open+load objects with maps pinned by name (reused when already
// pinned), an object's map definitions, pin and open pinned objects, object info, map create/freeze/open-by-id/update/delete/lookup/dump,
// BPF_PROG_TEST_RUN, bpffs mount. Every fd comes and goes as a BpfFd (bpf_fd.h); calls with more than two
// parameters take one option object.
// Mechanical only: every call marshals arguments, makes the syscall(s) off the JS thread and maps errno to
// kmesh::ErrnoError. Which objects to load, where to pin and what to write is decided in src/datapath/.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/statfs.h>

#include <cstdarg>
#include <cstdio>
#include <memory>
#include <vector>

#include "bpf_async.h"
#include "bpf_fd.h"

namespace kmesh {

static thread_local std::string tls_libbpf_log;

static int CaptureLibbpf(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n <= 0) return n;
  std::string line(static_cast<size_t>(n) + 1, '\0');
  vsnprintf(line.data(), line.size(), fmt, args);
  line.resize(static_cast<size_t>(n));
  // Keep the tail: a verifier log ends with the reason it rejected the program.
  tls_libbpf_log.append(line);
  if (tls_libbpf_log.size() > 16 * 1024) tls_libbpf_log.erase(0, tls_libbpf_log.size() - 16 * 1024);
  return n;
}

std::string TakeLibbpfLog() {
  std::string s;
  s.swap(tls_libbpf_log);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}
void ClearLibbpfLog() { tls_libbpf_log.clear(); }

static int DupFd(int fd) { return fcntl(fd, F_DUPFD_CLOEXEC, 3); }

struct NamedFd {
  std::string name;
  int fd;
};

// loadObject({ path, mapPinDir }) -> Promise<{ programs: {name, fd: BpfFd}[], maps: {name, fd: BpfFd}[] }>
static Napi::Value LoadObject(const Napi::CallbackInfo& info) {
  Napi::Object o = ArgOptions(info, 0, "loadObject options");
  std::string path = ReqStr(o, "path");
  std::string pinDir = ReqStr(o, "mapPinDir");
  auto progs = std::make_shared<std::vector<NamedFd>>();
  auto maps = std::make_shared<std::vector<NamedFd>>();
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pinDir.c_str());
        struct bpf_object* obj = bpf_object__open_file(path.c_str(), &opts);
        if (!obj) {
          f = {errno, "open BPF object", path};
          return;
        }
        int err = bpf_object__load(obj);
        if (err) {
          f = {-err, "load BPF object", path};
          bpf_object__close(obj);
          return;
        }
        struct bpf_program* prog;
        bpf_object__for_each_program(prog, obj) {
          int fd = DupFd(bpf_program__fd(prog));
          if (fd < 0) {
            f = {errno, "dup program fd", bpf_program__name(prog)};
            break;
          }
          progs->push_back({bpf_program__name(prog), fd});
        }
        struct bpf_map* map;
        bpf_object__for_each_map(map, obj) {
          if (f.err || bpf_map__is_internal(map)) continue;
          int fd = DupFd(bpf_map__fd(map));
          if (fd < 0) {
            f = {errno, "dup map fd", bpf_map__name(map)};
            break;
          }
          maps->push_back({bpf_map__name(map), fd});
        }
        bpf_object__close(obj);
        if (f.err) {
          for (auto& p : *progs) close(p.fd);
          for (auto& m : *maps) close(m.fd);
        }
      },
      [=](Napi::Env env) -> Napi::Value {
        auto list = [&](const std::vector<NamedFd>& v) {
          Napi::Array a = Napi::Array::New(env, v.size());
          for (size_t i = 0; i < v.size(); i++) {
            Napi::Object o = Napi::Object::New(env);
            o.Set("name", v[i].name);
            o.Set("fd", BpfFd::Wrap(env, v[i].fd));
            a.Set(i, o);
          }
          return a;
        };
        Napi::Object out = Napi::Object::New(env);
        out.Set("programs", list(*progs));
        out.Set("maps", list(*maps));
        return out;
      });
}

// pinObject(fd: BpfFd, path) -> Promise<void>
static Napi::Value PinObject(const Napi::CallbackInfo& info) {
  FdRef fd = ArgFd(info, 0, "fd");
  std::string path = ArgStr(info, 1, "pin path");
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        if (bpf_obj_pin(fd->get(), path.c_str())) f = {errno, "pin", path};
      },
      [](Napi::Env env) { return env.Undefined(); });
}

// getPinned(path) -> Promise<BpfFd>
static Napi::Value GetPinned(const Napi::CallbackInfo& info) {
  std::string path = ArgStr(info, 0, "pin path");
  auto fd = std::make_shared<int>(-1);
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        *fd = bpf_obj_get(path.c_str());
        if (*fd < 0) f = {errno, "open pinned object", path};
      },
      [=](Napi::Env env) { return BpfFd::Wrap(env, *fd); });
}

static std::string Hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) {
    s.push_back(d[p[i] >> 4]);
    s.push_back(d[p[i] & 15]);
  }
  return s;
}

// The kernel's info record of the program/map/link behind argument 0 (a BpfFd); `kind` names it in errors.
template <typename Info>
static Info ObjInfoArg(const Napi::CallbackInfo& info, const std::string& kind) {
  FdRef fd = ArgFd(info, 0, (kind + " fd").c_str());
  Info out = {};
  __u32 len = sizeof(out);
  if (bpf_obj_get_info_by_fd(fd->get(), &out, &len)) {
    throw ErrnoError(info.Env(), errno, "get " + kind + " info", "fd " + std::to_string(fd->get()));
  }
  return out;
}

// progInfo(fd: BpfFd) -> { id, name, tag, type }
static Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  auto pi = ObjInfoArg<bpf_prog_info>(info, "program");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("id", pi.id);
  o.Set("name", std::string(pi.name));
  o.Set("tag", Hex(pi.tag, sizeof(pi.tag)));
  o.Set("type", pi.type);
  return o;
}

// mapInfo(fd: BpfFd) -> { id, name, type, keySize, valueSize, maxEntries, flags }
static Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  auto mi = ObjInfoArg<bpf_map_info>(info, "map");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("id", mi.id);
  o.Set("name", std::string(mi.name));
  o.Set("type", mi.type);
  o.Set("keySize", mi.key_size);
  o.Set("valueSize", mi.value_size);
  o.Set("maxEntries", mi.max_entries);
  o.Set("flags", mi.map_flags);
  return o;
}

struct MapDef {
  std::string name;
  uint32_t type, keySize, valueSize, maxEntries, flags;
};

// objectMaps(path) -> Promise<{ name, type, keySize, valueSize, maxEntries, flags }[]>: the definitions of an
// object file's maps (internal .data/.rodata/.bss ones left out), as libbpf would create them; nothing is loaded.
static Napi::Value ObjectMaps(const Napi::CallbackInfo& info) {
  std::string path = ArgStr(info, 0, "object path");
  auto defs = std::make_shared<std::vector<MapDef>>();
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        struct bpf_object* obj = bpf_object__open_file(path.c_str(), nullptr);
        if (!obj) {
          f = {errno, "open BPF object", path};
          return;
        }
        struct bpf_map* map;
        bpf_object__for_each_map(map, obj) {
          if (bpf_map__is_internal(map)) continue;
          defs->push_back({bpf_map__name(map), static_cast<uint32_t>(bpf_map__type(map)), bpf_map__key_size(map),
                           bpf_map__value_size(map), bpf_map__max_entries(map),
                           static_cast<uint32_t>(bpf_map__map_flags(map))});
        }
        bpf_object__close(obj);
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Array a = Napi::Array::New(env, defs->size());
        for (size_t i = 0; i < defs->size(); i++) {
          const MapDef& d = (*defs)[i];
          Napi::Object o = Napi::Object::New(env);
          o.Set("name", d.name);
          o.Set("type", d.type);
          o.Set("keySize", d.keySize);
          o.Set("valueSize", d.valueSize);
          o.Set("maxEntries", d.maxEntries);
          o.Set("flags", d.flags);
          a.Set(i, o);
        }
        return a;
      });
}

// linkInfo(fd: BpfFd) -> { id, progId, type, ifindex } (ifindex of a tcx/xdp link, 0 once its device is gone)
static Napi::Value LinkInfo(const Napi::CallbackInfo& info) {
  auto li = ObjInfoArg<bpf_link_info>(info, "link");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("id", li.id);
  o.Set("progId", li.prog_id);
  o.Set("type", li.type);
  // TCX links report {ifindex, attach_type} at the start of the union, where XDP links keep their ifindex.
  o.Set("ifindex", li.xdp.ifindex);
  return o;
}

// Worker-thread half of map reads: the map's info and the size of one looked-up value (per-CPU maps: every
// possible CPU's value back to back, each 8-byte aligned). False, with f filled, when the kernel will not say.
static bool MapValueLayout(int fd, BpfFailure& f, bpf_map_info& mi, size_t& vsize) {
  __u32 len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len)) {
    f = {errno, "get map info", "fd " + std::to_string(fd)};
    return false;
  }
  bool percpu = mi.type == BPF_MAP_TYPE_PERCPU_ARRAY || mi.type == BPF_MAP_TYPE_PERCPU_HASH ||
                mi.type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
  vsize = percpu ? ((mi.value_size + 7) / 8 * 8) * libbpf_num_possible_cpus() : mi.value_size;
  return true;
}

// mapApply(map: BpfFd, ops: {key: Buffer, value?: Buffer}[]) -> Promise<void>. Applied in order: with a value it is an
// update (BPF_ANY), without one a delete. Per-CPU maps take every possible CPU's value back to back, as mapDump
// returns them. Stops at the first failure, whose error names the map and the op.
static Napi::Value MapApply(const Napi::CallbackInfo& info) {
  FdRef map = ArgFd(info, 0, "map");
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(info.Env(), "ops must be an array");
  Napi::Array arr = info[1].As<Napi::Array>();
  struct Op {
    std::string key, value;
    bool update;
  };
  auto ops = std::make_shared<std::vector<Op>>();
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsObject()) throw Napi::TypeError::New(info.Env(), "op " + std::to_string(i) + " must be an object");
    Napi::Object o = v.As<Napi::Object>();
    Napi::Value k = o.Get("key");
    Napi::Value val = o.Get("value");
    if (!k.IsBuffer()) throw Napi::TypeError::New(info.Env(), "op " + std::to_string(i) + " key must be a Buffer");
    Op op;
    auto kb = k.As<Napi::Buffer<uint8_t>>();
    op.key.assign(reinterpret_cast<const char*>(kb.Data()), kb.Length());
    op.update = !val.IsUndefined();
    if (op.update) {
      if (!val.IsBuffer()) {
        throw Napi::TypeError::New(info.Env(), "op " + std::to_string(i) + " value must be a Buffer");
      }
      auto vb = val.As<Napi::Buffer<uint8_t>>();
      op.value.assign(reinterpret_cast<const char*>(vb.Data()), vb.Length());
    }
    ops->push_back(std::move(op));
  }
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        int fd = map->get();
        struct bpf_map_info mi = {};
        size_t vsize = 0;
        if (!MapValueLayout(fd, f, mi, vsize)) return;
        for (size_t i = 0; i < ops->size(); i++) {
          const Op& op = (*ops)[i];
          if (op.key.size() != mi.key_size || (op.update && op.value.size() != vsize)) {
            f = {EINVAL, op.update ? "update (key/value size mismatch)" : "delete (key size mismatch)",
                 std::string("map ") + mi.name};
            return;
          }
          int rc = op.update ? bpf_map_update_elem(fd, op.key.data(), op.value.data(), BPF_ANY)
                             : bpf_map_delete_elem(fd, op.key.data());
          if (rc) {
            f = {errno, op.update ? "update entry " + std::to_string(i) + " of" : "delete entry " + std::to_string(i) + " of",
                 std::string("map ") + mi.name};
            return;
          }
        }
      },
      [](Napi::Env env) { return env.Undefined(); });
}

// mapCreate({ type, name, keySize, valueSize, maxEntries, flags? }) -> Promise<BpfFd>: a new, unpinned map.
static Napi::Value MapCreate(const Napi::CallbackInfo& info) {
  Napi::Object o = ArgOptions(info, 0, "mapCreate options");
  uint32_t type = ReqU32(o, "type");
  std::string name = ReqStr(o, "name");
  uint32_t keySize = ReqU32(o, "keySize");
  uint32_t valueSize = ReqU32(o, "valueSize");
  uint32_t maxEntries = ReqU32(o, "maxEntries");
  uint32_t flags = OptU32(o, "flags", 0);
  auto fd = std::make_shared<int>(-1);
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
        *fd = bpf_map_create(static_cast<enum bpf_map_type>(type), name.c_str(), keySize, valueSize, maxEntries,
                             &opts);
        if (*fd < 0) f = {errno, "create map", name};
      },
      [=](Napi::Env env) { return BpfFd::Wrap(env, *fd); });
}

// mapFreeze(map: BpfFd) -> Promise<void>: no more writes to the map through syscalls (programs still read it).
static Napi::Value MapFreeze(const Napi::CallbackInfo& info) {
  FdRef map = ArgFd(info, 0, "map");
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        if (bpf_map_freeze(map->get())) f = {errno, "freeze map", "fd " + std::to_string(map->get())};
      },
      [](Napi::Env env) { return env.Undefined(); });
}

// mapFdById(id) -> Promise<BpfFd>: opens the map with this kernel id (e.g. an inner map found in a map-in-map).
static Napi::Value MapFdById(const Napi::CallbackInfo& info) {
  int id = ArgI32(info, 0, "map id");
  auto fd = std::make_shared<int>(-1);
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        *fd = bpf_map_get_fd_by_id(static_cast<__u32>(id));
        if (*fd < 0) f = {errno, "open map by id", std::to_string(id)};
      },
      [=](Napi::Env env) { return BpfFd::Wrap(env, *fd); });
}

// mapLookup(map: BpfFd, key) -> Promise<Buffer | null>. Per-CPU maps return all CPUs' values back to back.
static Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  FdRef map = ArgFd(info, 0, "map");
  std::string key = ArgBytes(info, 1, "key");
  auto value = std::make_shared<std::string>();
  auto found = std::make_shared<bool>(false);
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        int fd = map->get();
        struct bpf_map_info mi = {};
        size_t vsize = 0;
        if (!MapValueLayout(fd, f, mi, vsize)) return;
        value->resize(vsize);
        if (bpf_map_lookup_elem(fd, key.data(), value->data()) == 0) {
          *found = true;
        } else if (errno != ENOENT) {
          f = {errno, "lookup in", std::string("map ") + mi.name};
        }
      },
      [=](Napi::Env env) -> Napi::Value { return *found ? Napi::Value(ToBuffer(env, *value)) : env.Null(); });
}

// mapDump(map: BpfFd) -> Promise<{key: Buffer, value: Buffer}[]> (per-CPU values back to back, 8-byte aligned
// per CPU)
static Napi::Value MapDump(const Napi::CallbackInfo& info) {
  FdRef map = ArgFd(info, 0, "map");
  auto entries = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        int fd = map->get();
        struct bpf_map_info mi = {};
        size_t vsize = 0;
        if (!MapValueLayout(fd, f, mi, vsize)) return;
        std::string cur, next(mi.key_size, '\0'), value(vsize, '\0');
        const void* prev = nullptr;
        for (;;) {
          if (bpf_map_get_next_key(fd, prev, next.data())) {
            if (errno != ENOENT) f = {errno, "iterate", std::string("map ") + mi.name};
            return;
          }
          cur = next;
          prev = cur.data();
          if (bpf_map_lookup_elem(fd, cur.data(), value.data())) {
            if (errno == ENOENT) continue;  // deleted between get_next_key and lookup
            f = {errno, "lookup in", std::string("map ") + mi.name};
            return;
          }
          entries->emplace_back(cur, value);
        }
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Array a = Napi::Array::New(env, entries->size());
        for (size_t i = 0; i < entries->size(); i++) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("key", ToBuffer(env, (*entries)[i].first));
          o.Set("value", ToBuffer(env, (*entries)[i].second));
          a.Set(i, o);
        }
        return a;
      });
}

// testRun(prog: BpfFd, { packet, mark?, repeat? }) -> Promise<{ retval, mark, durationNs, packet }>
static Napi::Value TestRun(const Napi::CallbackInfo& info) {
  FdRef prog = ArgFd(info, 0, "program");
  Napi::Object o = ArgOptions(info, 1, "testRun options");
  std::string packet = ReqBytes(o, "packet");
  uint32_t mark = OptU32(o, "mark", 0);
  uint32_t repeat = OptU32(o, "repeat", 1);
  struct Result {
    uint32_t retval = 0, mark = 0, duration = 0;
    std::string out;
  };
  auto r = std::make_shared<Result>();
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        struct __sk_buff ctx_in = {}, ctx_out = {};
        ctx_in.mark = mark;
        r->out.resize(packet.size() + 256);
        LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet.data(), .data_out = r->out.data(),
                    .data_size_in = static_cast<__u32>(packet.size()),
                    .data_size_out = static_cast<__u32>(r->out.size()), .ctx_in = &ctx_in, .ctx_out = &ctx_out,
                    .ctx_size_in = sizeof(ctx_in), .ctx_size_out = sizeof(ctx_out),
                    .repeat = static_cast<int>(repeat));
        if (bpf_prog_test_run_opts(prog->get(), &opts)) {
          f = {errno, "test-run", "program fd " + std::to_string(prog->get())};
          return;
        }
        r->retval = opts.retval;
        r->mark = ctx_out.mark;
        r->duration = opts.duration;
        r->out.resize(opts.data_size_out);
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("retval", Napi::Number::New(env, static_cast<int32_t>(r->retval)));
        o.Set("mark", r->mark);
        o.Set("durationNs", r->duration);
        o.Set("packet", ToBuffer(env, r->out));
        return o;
      });
}

// isBpffs(path) -> boolean: whether path is on a BPF filesystem (statfs magic).
static Napi::Value IsBpffs(const Napi::CallbackInfo& info) {
  std::string path = ArgStr(info, 0, "path");
  struct statfs st = {};
  if (statfs(path.c_str(), &st) != 0) throw ErrnoError(info.Env(), errno, "statfs", path);
  return Napi::Boolean::New(info.Env(), static_cast<unsigned long>(st.f_type) == BPF_FS_MAGIC);
}

// mountBpffs(path) -> Promise<void>: mount -t bpf bpf <path>
static Napi::Value MountBpffs(const Napi::CallbackInfo& info) {
  std::string path = ArgStr(info, 0, "mount point");
  return RunAsync(
      info.Env(),
      [=](BpfFailure& f) {
        if (mount("bpf", path.c_str(), "bpf", 0, "mode=0700")) f = {errno, "mount bpffs on", path};
      },
      [](Napi::Env env) { return env.Undefined(); });
}

void InitBpf(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(CaptureLibbpf);
  Napi::Object bpf = Napi::Object::New(env);
  BpfFd::Init(env, bpf);
  bpf.Set("loadObject", Napi::Function::New(env, LoadObject, "loadObject"));
  bpf.Set("pinObject", Napi::Function::New(env, PinObject, "pinObject"));
  bpf.Set("getPinned", Napi::Function::New(env, GetPinned, "getPinned"));
  bpf.Set("progInfo", Napi::Function::New(env, ProgInfo, "progInfo"));
  bpf.Set("mapInfo", Napi::Function::New(env, MapInfo, "mapInfo"));
  bpf.Set("objectMaps", Napi::Function::New(env, ObjectMaps, "objectMaps"));
  bpf.Set("linkInfo", Napi::Function::New(env, LinkInfo, "linkInfo"));
  bpf.Set("mapApply", Napi::Function::New(env, MapApply, "mapApply"));
  bpf.Set("mapCreate", Napi::Function::New(env, MapCreate, "mapCreate"));
  bpf.Set("mapFreeze", Napi::Function::New(env, MapFreeze, "mapFreeze"));
  bpf.Set("mapFdById", Napi::Function::New(env, MapFdById, "mapFdById"));
  bpf.Set("mapLookup", Napi::Function::New(env, MapLookup, "mapLookup"));
  bpf.Set("mapDump", Napi::Function::New(env, MapDump, "mapDump"));
  bpf.Set("testRun", Napi::Function::New(env, TestRun, "testRun"));
  bpf.Set("isBpffs", Napi::Function::New(env, IsBpffs, "isBpffs"));
  bpf.Set("mountBpffs", Napi::Function::New(env, MountBpffs, "mountBpffs"));
  bpf.Set("possibleCpus", Napi::Number::New(env, libbpf_num_possible_cpus()));
  InitBpfTc(env, bpf);
  exports.Set("bpf", bpf);
}

}  // namespace kmesh

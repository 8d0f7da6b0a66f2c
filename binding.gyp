{
  "targets": [
    {
      "target_name": "kmesh_native",
      "sources": ["native/addon.cc", "native/bpf.cc", "native/bpf_tc.cc", "native/bpf_fd.cc", "native/xfrm.cc", "native/xfrm_encode.cc", "native/xfrm_monitor.cc", "native/xfrm_dump.cc", "native/file_lock.cc", "native/pair_keys.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lbpf"]
    }
  ]
}

{
  "targets": [
    {
      "target_name": "corewal_frames",
      "sources": ["native/frames.c", "native/pool-io.c"],
      "conditions": [["OS=='linux'", { "sources": ["native/pool-lane.c"] }]],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "xcode_settings": { "OTHER_CFLAGS": ["-std=gnu11", "-O2"] },
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "corewal_uring",
      "conditions": [
        ["OS=='linux'", {
          "sources": ["native/uring.c"],
          "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
          "defines": ["NAPI_VERSION=8"]
        }]
      ]
    }
  ]
}

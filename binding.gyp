{
  "targets": [
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

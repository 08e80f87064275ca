// Seals a run of framed records in one call: for every `[length u32][crc32c u32][payload]`
// frame in buf[from, to), computes the payload's CRC-32C and stores it in the frame.
//
// Why native, and why a run: at record sizes (100–200 B) the JavaScript table CRC costs
// ~80 ns a record and a call into a CRC binding ~150 ns, more than the CRC itself; the
// writer instead leaves CRCs blank while it appends and seals everything appended since
// the last write just before the bytes go out, one call per write, with the CPU's CRC-32C
// instruction (SSE4.2 / ARMv8 CRC) where it has one.
//
// The writer produced the lengths, so a frame that does not fit `to` means a bug: the
// call then throws without writing anything past the last whole frame.
//
// verifyFrames is the reader's side of the same trade: it checks a run of frames read
// from disk in one call, where the reader would otherwise run the table CRC per record.
// The bytes are untrusted, so it never throws on them: it reports how far they are good
// and leaves everything after that to the reader's record-by-record classification.

#include <node_api.h>
#include <stddef.h>

#include "pool-io.h"
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define HAVE_X86_CRC 1
#endif
#if defined(__aarch64__)
#include <arm_acle.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif
#endif

static uint32_t table[8][256];
static int use_hw = 0;

static void init_table(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

static uint32_t crc_sw(const uint8_t* p, size_t n) {
  uint32_t c = 0xffffffffu;
  while (n >= 8) {
    uint32_t a, b;
    memcpy(&a, p, 4);
    memcpy(&b, p + 4, 4);
    a ^= c;  // little-endian hosts only (checked at load against a known value)
    c = table[7][a & 0xff] ^ table[6][(a >> 8) & 0xff] ^ table[5][(a >> 16) & 0xff] ^ table[4][a >> 24] ^
        table[3][b & 0xff] ^ table[2][(b >> 8) & 0xff] ^ table[1][(b >> 16) & 0xff] ^ table[0][b >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return ~c;
}

#if defined(HAVE_X86_CRC)
// Three independent CRC streams over adjacent blocks keep the CRC unit busy (the
// instruction's latency is 3 cycles, its throughput 1): ~2.5x one stream on kilobyte
// payloads. The blocks' CRCs are combined by "appending zeros" with precomputed tables
// (Mark Adler's method, crc32c.c on Stack Overflow, public domain).
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256
static uint32_t zeros_long[4][256];
static uint32_t zeros_short[4][256];

static uint32_t gf2_times(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  while (vec) {
    if (vec & 1) sum ^= *mat;
    vec >>= 1;
    mat++;
  }
  return sum;
}

static void gf2_square(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; n++) square[n] = gf2_times(mat, mat[n]);
}

// The operator that appends `len` zero bytes (a power of two) to a CRC.
static void zeros_op(uint32_t* even, size_t len) {
  uint32_t odd[32];
  odd[0] = 0x82f63b78u;
  uint32_t row = 1;
  for (int n = 1; n < 32; n++) {
    odd[n] = row;
    row <<= 1;
  }
  gf2_square(even, odd);  // two zero bits
  gf2_square(odd, even);  // four
  do {
    gf2_square(even, odd);
    len >>= 1;
    if (len == 0) return;
    gf2_square(odd, even);
    len >>= 1;
  } while (len);
  for (int n = 0; n < 32; n++) even[n] = odd[n];
}

static void zeros_table(uint32_t zeros[][256], size_t len) {
  uint32_t op[32];
  zeros_op(op, len);
  for (uint32_t n = 0; n < 256; n++) {
    zeros[0][n] = gf2_times(op, n);
    zeros[1][n] = gf2_times(op, n << 8);
    zeros[2][n] = gf2_times(op, n << 16);
    zeros[3][n] = gf2_times(op, n << 24);
  }
}

static inline uint32_t shift_crc(uint32_t zeros[][256], uint32_t crc) {
  return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}

static inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

// Consumes whole triples of `block`-byte blocks from *p, three streams at once.
__attribute__((target("sse4.2"))) static inline uint64_t crc_triples(uint64_t c0, const uint8_t** pp, size_t* np, size_t block,
                                                                     uint32_t zeros[][256]) {
  const uint8_t* p = *pp;
  size_t n = *np;
  while (n >= 3 * block) {
    uint64_t c1 = 0, c2 = 0;
    const uint8_t* end = p + block;
    do {
      c0 = _mm_crc32_u64(c0, load64(p));
      c1 = _mm_crc32_u64(c1, load64(p + block));
      c2 = _mm_crc32_u64(c2, load64(p + 2 * block));
      p += 8;
    } while (p < end);
    c0 = shift_crc(zeros, (uint32_t)c0) ^ c1;
    c0 = shift_crc(zeros, (uint32_t)c0) ^ c2;
    p += 2 * block;
    n -= 3 * block;
  }
  *pp = p;
  *np = n;
  return c0;
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(const uint8_t* p, size_t n) {
  uint64_t c0 = 0xffffffffu;
  c0 = crc_triples(c0, &p, &n, LONG_BLOCK, zeros_long);
  c0 = crc_triples(c0, &p, &n, SHORT_BLOCK, zeros_short);
  while (n >= 8) {
    c0 = _mm_crc32_u64(c0, load64(p));
    p += 8;
    n -= 8;
  }
  uint32_t c32 = (uint32_t)c0;
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}
#elif defined(__aarch64__)
__attribute__((target("+crc"))) static uint32_t crc_hw(const uint8_t* p, size_t n) {
  uint32_t c = 0xffffffffu;
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c = __crc32cd(c, v);
    p += 8;
    n -= 8;
  }
  while (n--) c = __crc32cb(c, *p++);
  return ~c;
}
#endif

static uint32_t crc32c(const uint8_t* p, size_t n) {
#if defined(HAVE_X86_CRC) || defined(__aarch64__)
  if (use_hw) return crc_hw(p, n);
#endif
  return crc_sw(p, n);
}

static inline uint32_t get_u32le(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void put_u32le(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static int get_bytes(napi_env env, napi_value v, uint8_t** data, size_t* len) {
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  napi_typedarray_type type;
  size_t length;
  void* ptr;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, &ab, &off) != napi_ok) return 0;
  if (type != napi_uint8_array) return 0;
  *data = (uint8_t*)ptr;
  *len = length;
  return 1;
}

// Both entry points take (buf: Uint8Array, from: number, to: number) with from <= to <= length.
static int range_args(napi_env env, napi_callback_info info, const char* usage, uint8_t** buf, size_t* from, size_t* to) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  size_t len;
  double from_d, to_d;
  if (argc < 3 || !get_bytes(env, argv[0], buf, &len) || napi_get_value_double(env, argv[1], &from_d) != napi_ok ||
      napi_get_value_double(env, argv[2], &to_d) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  if (!(from_d >= 0 && to_d >= from_d && to_d <= (double)len)) {
    napi_throw_range_error(env, NULL, usage);
    return 0;
  }
  *from = (size_t)from_d;
  *to = (size_t)to_d;
  return 1;
}

// sealFrames(buf, from, to): number — frames sealed.
static napi_value seal_frames(napi_env env, napi_callback_info info) {
  uint8_t* buf;
  size_t at, end;
  if (!range_args(env, info, "sealFrames(buf: Uint8Array, from: number, to: number), from <= to <= buf.length", &buf, &at, &end)) return NULL;
  uint32_t n = 0;
  while (at < end) {
    if (end - at < 8) break;
    uint32_t plen = get_u32le(buf + at);
    if ((size_t)plen > end - at - 8) break;
    put_u32le(buf + at + 4, crc32c(buf + at + 8, plen));
    at += 8 + (size_t)plen;
    n++;
  }
  if (at != end) {
    napi_throw_range_error(env, NULL, "sealFrames: the frames do not end at `to` (a length field is wrong)");
    return NULL;
  }
  napi_value out;
  napi_create_uint32(env, n, &out);
  return out;
}

// verifyFrames(buf, from, to, maxRecord): number — the offset just past the last frame of
// the longest run of good frames from `from`: each wholly before `to`, of a length in
// [1, maxRecord], its CRC right. `from` itself when the first frame is not good.
static napi_value verify_frames(napi_env env, napi_callback_info info) {
  static const char usage[] =
      "verifyFrames(buf: Uint8Array, from: number, to: number, maxRecord: number), from <= to <= buf.length, maxRecord >= 0";
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t* buf;
  size_t len;
  double from_d, to_d, max_d;
  if (argc < 4 || !get_bytes(env, argv[0], &buf, &len) || napi_get_value_double(env, argv[1], &from_d) != napi_ok ||
      napi_get_value_double(env, argv[2], &to_d) != napi_ok || napi_get_value_double(env, argv[3], &max_d) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (!(from_d >= 0 && to_d >= from_d && to_d <= (double)len && max_d >= 0)) {
    napi_throw_range_error(env, NULL, usage);
    return NULL;
  }
  size_t at = (size_t)from_d, end = (size_t)to_d;
  // A maximum past u32 admits every length a u32 field can hold.
  uint32_t max_rec = max_d >= 4294967295.0 ? 0xffffffffu : (uint32_t)max_d;
  while (end - at >= 8) {
    uint32_t plen = get_u32le(buf + at);
    if (plen == 0 || plen > max_rec || (size_t)plen > end - at - 8) break;
    if (crc32c(buf + at + 8, plen) != get_u32le(buf + at + 4)) break;
    at += 8 + (size_t)plen;
  }
  napi_value out;
  napi_create_double(env, (double)at, &out);
  return out;
}

// crc32c(buf, from, to): number — for the load-time self-check.
static napi_value crc_range(napi_env env, napi_callback_info info) {
  uint8_t* buf;
  size_t from, to;
  if (!range_args(env, info, "crc32c(buf: Uint8Array, from: number, to: number), from <= to <= buf.length", &buf, &from, &to)) return NULL;
  napi_value out;
  napi_create_uint32(env, crc32c(buf + from, to - from), &out);
  return out;
}

static napi_value hardware(napi_env env, napi_callback_info info) {
  napi_value out;
  napi_get_boolean(env, use_hw != 0, &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  init_table();
#if defined(HAVE_X86_CRC)
  __builtin_cpu_init();
  use_hw = __builtin_cpu_supports("sse4.2");
  zeros_table(zeros_long, LONG_BLOCK);
  zeros_table(zeros_short, SHORT_BLOCK);
#elif defined(__aarch64__) && defined(__linux__)
  // HWCAP_CRC32: the kernel says whether the core implements the CRC32 instructions.
  use_hw = (getauxval(AT_HWCAP) & (1 << 7)) != 0;
#endif
  napi_property_descriptor props[] = {
      {"sealFrames", NULL, seal_frames, NULL, NULL, NULL, napi_default, NULL},
      {"verifyFrames", NULL, verify_frames, NULL, NULL, NULL, napi_default, NULL},
      {"crc32c", NULL, crc_range, NULL, NULL, NULL, napi_default, NULL},
      {"hardware", NULL, hardware, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  pool_io_init(env, exports);
#ifdef __linux__
  pool_lane_init(env, exports);
#endif
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

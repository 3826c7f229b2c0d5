/* triton-core's C layer: the declarations cffi binds (build.py feeds this
 * file to ffi.cdef after dropping the preprocessor lines, so keep it to plain
 * declarations: no macros, no #if). All sizes are 64-bit so Python ints pass
 * through unchanged; functions return -1 (and set errno) or a negative code on
 * failure. cffi releases the GIL around every call. */
#ifndef TRITON_CORE_NATIVE_H
#define TRITON_CORE_NATIVE_H
#include <stdint.h>
#include <stddef.h>

/* ---- platform ---------------------------------------------------------- */
int tc_is_apple(void);
int64_t tc_page_size(void);

/* ---- POSIX shared memory ----------------------------------------------- */
enum {
    TC_SHM_CREATE = 1,    /* O_CREAT */
    TC_SHM_EXCL = 2,      /* with TC_SHM_CREATE: fail if it exists */
    TC_SHM_READONLY = 4,  /* open O_RDONLY (map read-only too) */
    TC_APPLE_NAME_MAX = 31 /* PSHMNAMLEN on macOS, slash included */
};
/* The OS name for `key` under the given platform rules (apple=1: macOS).
 * Writes a NUL-terminated name into out; returns its length, or -1 when
 * out_len is too small or the key is empty. Pure: no system call. */
int64_t tc_shm_name(const char *key, int apple, char *out, uint64_t out_len);
/* shm_open + fstat (+ one ftruncate when creating). Returns the fd, and the
 * object's size in *size_out; -1 with errno on failure. */
int tc_shm_open(const char *name, int flags, uint64_t size, uint64_t *size_out);
int tc_fstat_size(int fd, uint64_t *size_out);
/* mmap the whole object (offset 0, MAP_SHARED). NULL with errno on failure. */
void *tc_mmap(int fd, uint64_t size, int writable);
int tc_munmap(void *addr, uint64_t size);
int tc_close(int fd);
int tc_shm_unlink(const char *name);

/* ---- BYTES codec (4-byte little-endian length, then the bytes) --------- */
enum {
    TC_BYTES_ETRUNC_PREFIX = -1, /* a length prefix runs past the buffer */
    TC_BYTES_ETRUNC_DATA = -2,   /* a length runs past the buffer */
    TC_BYTES_ECAP = -3,          /* more elements than the output arrays hold */
    TC_BYTES_ETOOBIG = -4        /* an element longer than 2^32-1 bytes */
};
/* Walk the buffer. With starts/ends NULL only count; else fill up to cap.
 * Returns the element count or a TC_BYTES_E* code; on error *err_index is the
 * element and *err_value the length it read. Never reads past buf + len. */
int64_t tc_bytes_scan(const uint8_t *buf, uint64_t len, uint64_t *starts,
                      uint64_t *ends, uint64_t cap, uint64_t *err_index,
                      uint64_t *err_value);
/* Interleave length prefixes with the concatenated element data. out must
 * hold data_len + 4 * n bytes. Returns bytes written or a TC_BYTES_E* code. */
int64_t tc_bytes_serialize(const uint8_t *data, uint64_t data_len,
                           const uint64_t *lens, uint64_t n, uint8_t *out,
                           uint64_t out_len, uint64_t *err_index);

/* ---- gather / scatter -------------------------------------------------- */
/* Copy n buffers back to back into dst; -1 if they do not fit. */
int64_t tc_gather(uint8_t *dst, uint64_t dst_len, const uint8_t *const *srcs,
                  const uint64_t *lens, uint64_t n);
/* Split src into n destinations of lens[i] bytes; -1 if src is too short. */
int64_t tc_scatter(const uint8_t *src, uint64_t src_len, uint8_t *const *dsts,
                   const uint64_t *lens, uint64_t n);

/* ---- tensor descriptors in shared memory ------------------------------- */
/* One tensor of a request/response living in a shared-memory arena. Fixed
 * layout (152 bytes, 8-byte aligned, native byte order) shared by the server
 * and the python backend's worker processes. */
typedef struct {
    char name[64];        /* NUL-terminated UTF-8 */
    int32_t dtype;        /* TRITONSERVER_DataType value */
    int32_t ndim;         /* 0..8 */
    int64_t shape[8];
    uint64_t byte_offset; /* of the data, from the arena's start */
    uint64_t byte_size;
} tc_tensor_desc;
enum {
    TC_DESC_MAX_DIMS = 8,
    TC_DESC_OK = 0,
    TC_DESC_ENAME = -1,   /* name not NUL-terminated */
    TC_DESC_ENDIM = -2,   /* ndim outside 0..8 */
    TC_DESC_ESHAPE = -3,  /* a negative dimension */
    TC_DESC_ERANGE = -4,  /* data outside the arena */
    TC_DESC_EDTYPE = -5   /* dtype outside 1..14 */
};
/* Check a descriptor read from memory another process writes. */
int tc_desc_check(const tc_tensor_desc *d, uint64_t arena_size);

#endif

/* triton-core's C layer: POSIX shared memory with the platform's name rules,
 * Triton's BYTES codec, gather/scatter copies and tensor descriptors.
 * Only what is hot or OS-specific lives here; Python owns the rest. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "native.h"

#ifdef __APPLE__
#define TC_APPLE 1
#else
#define TC_APPLE 0
#endif

int tc_is_apple(void) { return TC_APPLE; }

int64_t tc_page_size(void) { return (int64_t)sysconf(_SC_PAGESIZE); }

/* ---- names ------------------------------------------------------------- */

/* FNV-1a: tiny, stable across runs and machines (unlike Python's hash). */
#define TC_FNV_SEED 14695981039346656037ULL
static uint64_t fnv1a64(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int64_t tc_shm_name(const char *key, int apple, char *out, uint64_t out_len)
{
    size_t n = strlen(key);
    if (n == 0)
        return -1;
    if (!apple) {
        /* Linux: glibc strips leading slashes itself; pass the key through. */
        if (n + 1 > out_len)
            return -1;
        memcpy(out, key, n + 1);
        return (int64_t)n;
    }
    /* macOS: names start with '/' and fit PSHMNAMLEN (31) bytes. */
    int slash = key[0] != '/';
    size_t full = n + (size_t)slash;
    if (full <= TC_APPLE_NAME_MAX) {
        if (full + 1 > out_len)
            return -1;
        out[0] = '/';
        memcpy(out + slash, key, n + 1);
        return (int64_t)full;
    }
    /* Too long: "/" + a readable prefix + "_" + 16 hex digits of the hash of
     * the whole slashed name, so distinct long keys stay distinct. */
    if (TC_APPLE_NAME_MAX + 1 > out_len)
        return -1;
    uint64_t h = fnv1a64(TC_FNV_SEED, "/", (size_t)slash);
    h = fnv1a64(h, key, n);
    const char *body = key + (slash ? 0 : 1); /* drop the caller's slash */
    size_t blen = n - (slash ? 0 : 1);
    size_t keep = TC_APPLE_NAME_MAX - 1 - 1 - 16; /* 13 bytes */
    if (keep > blen)
        keep = blen;
    /* Never cut a UTF-8 sequence in half: back off continuation bytes. */
    while (keep > 0 && ((unsigned char)body[keep] & 0xC0) == 0x80)
        keep--;
    static const char hex[] = "0123456789abcdef";
    size_t p = 0;
    out[p++] = '/';
    memcpy(out + p, body, keep);
    p += keep;
    out[p++] = '_';
    for (int i = 15; i >= 0; i--)
        out[p++] = hex[(h >> (4 * i)) & 0xF];
    out[p] = '\0';
    return (int64_t)p;
}

/* ---- shared memory ----------------------------------------------------- */

int tc_fstat_size(int fd, uint64_t *size_out)
{
    struct stat st;
    if (fstat(fd, &st) == -1)
        return -1;
    if (st.st_size < 0) { /* off_t is signed; never trust a negative size */
        errno = EINVAL;
        return -1;
    }
    *size_out = (uint64_t)st.st_size;
    return 0;
}

int tc_shm_open(const char *name, int flags, uint64_t size, uint64_t *size_out)
{
    int oflag = (flags & TC_SHM_READONLY) ? O_RDONLY : O_RDWR;
    if (flags & TC_SHM_CREATE)
        oflag |= O_CREAT | ((flags & TC_SHM_EXCL) ? O_EXCL : 0);
    int fd = shm_open(name, oflag, 0600);
    if (fd == -1)
        return -1;
    uint64_t cur = 0;
    if (tc_fstat_size(fd, &cur) == -1)
        goto fail;
    if ((flags & TC_SHM_CREATE) && cur < size) {
        /* macOS allows ftruncate once per object: only size a fresh (empty)
         * object there; Linux may grow an existing one. */
        if (TC_APPLE && cur != 0) {
            errno = EINVAL;
            goto fail;
        }
        if ((uint64_t)(off_t)size != size) {
            errno = EOVERFLOW;
            goto fail;
        }
        if (ftruncate(fd, (off_t)size) == -1)
            goto fail;
        /* macOS rounds to the page size: report what the OS reports. */
        if (tc_fstat_size(fd, &cur) == -1)
            goto fail;
    }
    *size_out = cur;
    return fd;
fail: {
        int e = errno;
        close(fd);
        /* Do not leave a half-made object behind when we made it. */
        if ((flags & TC_SHM_CREATE) && (flags & TC_SHM_EXCL))
            shm_unlink(name);
        errno = e;
        return -1;
    }
}

void *tc_mmap(int fd, uint64_t size, int writable)
{
    if (size == 0 || (uint64_t)(size_t)size != size) {
        errno = EINVAL;
        return NULL;
    }
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void *p = mmap(NULL, (size_t)size, prot, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

int tc_munmap(void *addr, uint64_t size) { return munmap(addr, (size_t)size); }

int tc_close(int fd) { return close(fd); }

int tc_shm_unlink(const char *name) { return shm_unlink(name); }

/* ---- BYTES codec ------------------------------------------------------- */

static inline uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

int64_t tc_bytes_scan(const uint8_t *buf, uint64_t len, uint64_t *starts,
                      uint64_t *ends, uint64_t cap, uint64_t *err_index,
                      uint64_t *err_value)
{
    uint64_t pos = 0, count = 0;
    while (pos < len) {
        if (len - pos < 4) { /* subtraction form: no overflow near the end */
            *err_index = count;
            *err_value = 0;
            return TC_BYTES_ETRUNC_PREFIX;
        }
        uint64_t n = load_le32(buf + pos);
        pos += 4;
        if (n > len - pos) {
            *err_index = count;
            *err_value = n;
            return TC_BYTES_ETRUNC_DATA;
        }
        if (starts != NULL) {
            if (count >= cap)
                return TC_BYTES_ECAP;
            starts[count] = pos;
            ends[count] = pos + n;
        }
        pos += n;
        count++;
    }
    return (int64_t)count;
}

int64_t tc_bytes_serialize(const uint8_t *data, uint64_t data_len,
                           const uint64_t *lens, uint64_t n, uint8_t *out,
                           uint64_t out_len, uint64_t *err_index)
{
    uint64_t in = 0, o = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t k = lens[i];
        if (k > 0xFFFFFFFFULL) {
            *err_index = i;
            return TC_BYTES_ETOOBIG;
        }
        if (k > data_len - in || out_len - o < 4 || k > out_len - o - 4) {
            *err_index = i;
            return TC_BYTES_ECAP;
        }
        out[o] = (uint8_t)k;
        out[o + 1] = (uint8_t)(k >> 8);
        out[o + 2] = (uint8_t)(k >> 16);
        out[o + 3] = (uint8_t)(k >> 24);
        memcpy(out + o + 4, data + in, (size_t)k);
        o += 4 + k;
        in += k;
    }
    return (int64_t)o;
}

/* ---- gather / scatter -------------------------------------------------- */

int64_t tc_gather(uint8_t *dst, uint64_t dst_len, const uint8_t *const *srcs,
                  const uint64_t *lens, uint64_t n)
{
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) { /* check all before writing any */
        if (lens[i] > dst_len - total)
            return -1;
        total += lens[i];
    }
    uint64_t o = 0;
    for (uint64_t i = 0; i < n; i++) {
        memmove(dst + o, srcs[i], (size_t)lens[i]);
        o += lens[i];
    }
    return (int64_t)total;
}

int64_t tc_scatter(const uint8_t *src, uint64_t src_len, uint8_t *const *dsts,
                   const uint64_t *lens, uint64_t n)
{
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (lens[i] > src_len - total)
            return -1;
        total += lens[i];
    }
    uint64_t o = 0;
    for (uint64_t i = 0; i < n; i++) {
        memmove(dsts[i], src + o, (size_t)lens[i]);
        o += lens[i];
    }
    return (int64_t)total;
}

/* ---- tensor descriptors ------------------------------------------------ */

int tc_desc_check(const tc_tensor_desc *d, uint64_t arena_size)
{
    if (memchr(d->name, '\0', sizeof d->name) == NULL)
        return TC_DESC_ENAME;
    if (d->dtype < 1 || d->dtype > 14)
        return TC_DESC_EDTYPE;
    if (d->ndim < 0 || d->ndim > TC_DESC_MAX_DIMS)
        return TC_DESC_ENDIM;
    for (int i = 0; i < d->ndim; i++)
        if (d->shape[i] < 0)
            return TC_DESC_ESHAPE;
    if (d->byte_offset > arena_size || d->byte_size > arena_size - d->byte_offset)
        return TC_DESC_ERANGE;
    return TC_DESC_OK;
}

// ggml_oracle: a tiny stdin/stdout bridge to llama.cpp's libggml-base.so,
// used by the quant package's tests to compare adaptq's Go codecs with
// ggml byte for byte. It is built by the Go test with
//
//	gcc -O2 -o ggml_oracle ggml_oracle.c -ldl
//
// and run as `ggml_oracle /path/to/libggml-base.so`. The library is loaded
// with dlopen, so nothing of llama.cpp is compiled into this program.
//
// Protocol (all integers little-endian int64, floats IEEE binary32, host
// order). The program serves requests until end of input. A request is a
// header of four int64 values: op, ggml type id, nrows, n_per_row.
//
//	op 0 (info):       no payload. Reply: blck_size, type_size, is_quantized
//	                   (int64 each), then the type name in 64 bytes,
//	                   zero-padded.
//	op 1 (quantize):   payload nrows*n_per_row floats. The program calls
//	                   ggml_quantize_chunk(type, src, dst, 0, nrows,
//	                   n_per_row, NULL). Reply: int64 byte count, bytes.
//	op 2 (dequantize): payload nrows*ggml_row_size(type, n_per_row) bytes.
//	                   The program calls the type's to_float trait on the
//	                   whole buffer. Reply: int64 float count, floats.
//	op 3 (time):       an int64 repeat count, then the op 1 payload. The
//	                   program quantizes the data once untimed (to fault in
//	                   the pages), then that many times on one thread. Reply: int64 wall-clock nanoseconds
//	                   (CLOCK_MONOTONIC) and int64 thread CPU nanoseconds
//	                   for all repeats (for benchmarks).
//	op 4 (time):       like op 3, for dequantizing the op 2 payload.
//	op 5 (quantize with an importance matrix): payload n_per_row floats
//	                   (the imatrix), then the op 1 payload. The program
//	                   calls ggml_quantize_chunk(type, src, dst, 0, nrows,
//	                   n_per_row, imatrix). Reply as for op 1.
//	op 6 (time):       an int64 repeat count, then the op 5 payload; timed
//	                   like op 3. Reply as for op 3.
//
// On any error the program prints a message to stderr and exits with 1.
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// Layout of struct ggml_type_traits in the llama.cpp release bundled with
// node-llama-cpp 3.21.1 (ggml/include/ggml.h).
typedef void (*to_float_fn)(const void *x, float *y, int64_t k);
typedef void (*from_float_fn)(const float *x, void *y, int64_t k);
struct type_traits {
    const char *type_name;
    int64_t blck_size;
    int64_t blck_size_interleave;
    size_t type_size;
    bool is_quantized;
    to_float_fn to_float;
    from_float_fn from_float_ref;
};

typedef size_t (*quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start,
                                    int64_t nrows, int64_t n_per_row, const float *imatrix);
typedef const struct type_traits *(*get_traits_fn)(int type);
typedef size_t (*row_size_fn)(int type, int64_t ne);

static void die(const char *msg) {
    fprintf(stderr, "ggml_oracle: %s\n", msg);
    exit(1);
}

static void *sym(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "ggml_oracle: symbol %s: %s\n", name, dlerror());
        exit(1);
    }
    return p;
}

static void read_full(void *buf, size_t n) {
    if (n && fread(buf, 1, n, stdin) != n) die("short read on stdin");
}

static void write_full(const void *buf, size_t n) {
    if (n && fwrite(buf, 1, n, stdout) != n) die("short write on stdout");
}

static void write_i64(int64_t v) { write_full(&v, sizeof v); }

static int64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 2) die("usage: ggml_oracle /path/to/libggml-base.so");
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "ggml_oracle: dlopen %s: %s\n", argv[1], dlerror());
        return 1;
    }
    quantize_chunk_fn quantize_chunk = (quantize_chunk_fn)sym(lib, "ggml_quantize_chunk");
    get_traits_fn get_traits = (get_traits_fn)sym(lib, "ggml_get_type_traits");
    row_size_fn row_size = (row_size_fn)sym(lib, "ggml_row_size");

    for (;;) {
        int64_t hdr[4];
        size_t got = fread(hdr, 1, sizeof hdr, stdin);
        if (got == 0 && feof(stdin)) break;
        if (got != sizeof hdr) die("short request header");
        int64_t op = hdr[0], type = hdr[1], nrows = hdr[2], n_per_row = hdr[3];
        if (type < 0 || type > 1000) die("bad type id");
        const struct type_traits *tt = get_traits((int)type);
        if (op == 0) {
            char name[64] = {0};
            if (tt->type_name) strncpy(name, tt->type_name, sizeof name - 1);
            write_i64(tt->blck_size);
            write_i64((int64_t)tt->type_size);
            write_i64(tt->is_quantized ? 1 : 0);
            write_full(name, sizeof name);
        } else if (op >= 1 && op <= 4) {
            if (nrows < 0 || n_per_row <= 0 || tt->blck_size <= 0 || n_per_row % tt->blck_size != 0)
                die("bad shape");
            size_t n = (size_t)nrows * (size_t)n_per_row;
            size_t nbytes = (size_t)nrows * row_size((int)type, n_per_row);
            float *f = malloc(n * sizeof(float) + 1);
            unsigned char *q = malloc(nbytes + 1);
            if (!f || !q) die("out of memory");
            int64_t reps = 1;
            if (op == 3 || op == 4) {
                read_full(&reps, sizeof reps);
                if (reps < 1) die("bad repeat count");
            }
            if (op == 3) {
                read_full(f, n * sizeof(float));
                quantize_chunk((int)type, f, q, 0, nrows, n_per_row, NULL);
                int64_t wall = now_ns(CLOCK_MONOTONIC), cpu = now_ns(CLOCK_THREAD_CPUTIME_ID);
                for (int64_t r = 0; r < reps; r++) {
                    if (quantize_chunk((int)type, f, q, 0, nrows, n_per_row, NULL) != nbytes)
                        die("ggml_quantize_chunk returned an unexpected size");
                }
                write_i64(now_ns(CLOCK_MONOTONIC) - wall);
                write_i64(now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu);
            } else if (op == 4) {
                if (!tt->to_float) die("type has no to_float");
                read_full(q, nbytes);
                tt->to_float(q, f, (int64_t)n);
                int64_t wall = now_ns(CLOCK_MONOTONIC), cpu = now_ns(CLOCK_THREAD_CPUTIME_ID);
                for (int64_t r = 0; r < reps; r++) tt->to_float(q, f, (int64_t)n);
                write_i64(now_ns(CLOCK_MONOTONIC) - wall);
                write_i64(now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu);
            } else if (op == 1) {
                read_full(f, n * sizeof(float));
                size_t r = quantize_chunk((int)type, f, q, 0, nrows, n_per_row, NULL);
                if (r != nbytes) die("ggml_quantize_chunk returned an unexpected size");
                write_i64((int64_t)nbytes);
                write_full(q, nbytes);
            } else {
                if (!tt->to_float) die("type has no to_float");
                read_full(q, nbytes);
                tt->to_float(q, f, (int64_t)n);
                write_i64((int64_t)n);
                write_full(f, n * sizeof(float));
            }
            free(f);
            free(q);
        } else if (op == 5 || op == 6) {
            if (nrows < 0 || n_per_row <= 0 || tt->blck_size <= 0 || n_per_row % tt->blck_size != 0)
                die("bad shape");
            size_t n = (size_t)nrows * (size_t)n_per_row;
            size_t nbytes = (size_t)nrows * row_size((int)type, n_per_row);
            float *imatrix = malloc((size_t)n_per_row * sizeof(float));
            float *f = malloc(n * sizeof(float) + 1);
            unsigned char *q = malloc(nbytes + 1);
            if (!imatrix || !f || !q) die("out of memory");
            int64_t reps = 1;
            if (op == 6) {
                read_full(&reps, sizeof reps);
                if (reps < 1) die("bad repeat count");
            }
            read_full(imatrix, (size_t)n_per_row * sizeof(float));
            read_full(f, n * sizeof(float));
            if (quantize_chunk((int)type, f, q, 0, nrows, n_per_row, imatrix) != nbytes)
                die("ggml_quantize_chunk returned an unexpected size");
            if (op == 5) {
                write_i64((int64_t)nbytes);
                write_full(q, nbytes);
            } else {
                int64_t wall = now_ns(CLOCK_MONOTONIC), cpu = now_ns(CLOCK_THREAD_CPUTIME_ID);
                for (int64_t r = 0; r < reps; r++) quantize_chunk((int)type, f, q, 0, nrows, n_per_row, imatrix);
                write_i64(now_ns(CLOCK_MONOTONIC) - wall);
                write_i64(now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu);
            }
            free(imatrix);
            free(f);
            free(q);
        } else {
            die("bad op");
        }
        fflush(stdout);
    }
    return 0;
}

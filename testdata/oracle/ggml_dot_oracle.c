// ggml_dot_oracle: a stdin/stdout bridge to llama.cpp's CPU backend
// (libggml-cpu-<variant>.so), used by the kernels package's tests to
// compare adaptq's activation quantizers and integer dot products with
// ggml's. It is built by the Go test with
//
//	gcc -O2 -o ggml_dot_oracle ggml_dot_oracle.c -ldl
//
// and run as `ggml_dot_oracle /path/libggml-base.so /path/libggml-cpu-X.so`.
// The libraries are loaded with dlopen; nothing of llama.cpp is compiled
// into this program.
//
// Protocol (little-endian int64 and IEEE binary32, host order), repeated
// until end of input. Request: int64 weight type id, int64 n (values per
// row), the weight row (ggml_row_size(type, n) bytes), then n floats x.
// The program converts x with the weight type's from_float (to its
// vec_dot_type) and calls vec_dot(n, &s, weight, activation). Reply: int64
// vec_dot_type id, int64 byte count, the converted activation bytes, then s
// as one float.
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// struct ggml_type_traits_cpu of ggml/include/ggml-cpu.h in the llama.cpp
// release bundled with node-llama-cpp 3.21.1.
typedef void (*from_float_fn)(const float *x, void *y, int64_t k);
typedef void (*vec_dot_fn)(int n, float *s, size_t bs, const void *x, size_t bx, const void *y, size_t by, int nrc);
struct traits_cpu {
    from_float_fn from_float;
    vec_dot_fn vec_dot;
    int vec_dot_type;
    int64_t nrows;
};
typedef const struct traits_cpu *(*get_traits_fn)(int type);
typedef size_t (*row_size_fn)(int type, int64_t ne);
typedef void (*init_fn)(void);

static void die(const char *msg) {
    fprintf(stderr, "ggml_dot_oracle: %s\n", msg);
    exit(1);
}

static void *sym(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (!p) die(dlerror());
    return p;
}

static int readn(void *p, size_t n) { return fread(p, 1, n, stdin) == n; }

static void writen(const void *p, size_t n) {
    if (fwrite(p, 1, n, stdout) != n) die("write failed");
}

int main(int argc, char **argv) {
    if (argc != 3) die("usage: ggml_dot_oracle libggml-base.so libggml-cpu-X.so");
    void *base = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    if (!base) die(dlerror());
    void *cpu = dlopen(argv[2], RTLD_NOW | RTLD_GLOBAL);
    if (!cpu) die(dlerror());
    row_size_fn row_size = (row_size_fn)sym(base, "ggml_row_size");
    get_traits_fn traits = (get_traits_fn)sym(cpu, "ggml_get_type_traits_cpu");
    ((init_fn)sym(cpu, "ggml_cpu_init"))();
    for (;;) {
        int64_t hdr[2];
        if (!readn(hdr, sizeof hdr)) return 0;
        int type = (int)hdr[0];
        int64_t n = hdr[1];
        const struct traits_cpu *t = traits(type);
        if (!t || !t->vec_dot) die("type has no vec_dot");
        const struct traits_cpu *vt = traits(t->vec_dot_type);
        if (!vt || !vt->from_float) die("vec_dot_type has no from_float");
        size_t wb = row_size(type, n), ab = row_size(t->vec_dot_type, n);
        void *w = malloc(wb), *a = malloc(ab);
        float *x = malloc(n * sizeof(float));
        if (!w || !a || !x) die("out of memory");
        if (!readn(w, wb) || !readn(x, n * sizeof(float))) die("short request");
        vt->from_float(x, a, n);
        float s = 0;
        t->vec_dot((int)n, &s, 0, w, 0, a, 0, 1);
        int64_t out[2] = {t->vec_dot_type, (int64_t)ab};
        writen(out, sizeof out);
        writen(a, ab);
        writen(&s, sizeof s);
        fflush(stdout);
        free(w);
        free(a);
        free(x);
    }
}

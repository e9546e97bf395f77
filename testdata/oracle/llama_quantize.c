// llama_quantize: runs llama.cpp's own file quantizer, llama_model_quantize
// from node-llama-cpp's libllama, on one GGUF file. adaptq's tests and the
// quality bench use it as the oracle of the presets (which type each tensor
// gets) and as the source of llama.cpp's files for side-by-side quality
// figures. Package internal/llamaquant builds it with
//
//	gcc -O2 -o llama_quantize llama_quantize.c -ldl
//
// and runs
//
//	llama_quantize <libllama.so> <src.gguf> <dst.gguf> <ftype> <nthread> [imatrix.bin]
//
// ftype is a llama_ftype number (15 is Q4_K_M). The library is loaded with
// dlopen, so nothing of llama.cpp is compiled into this program; the few
// declarations below follow include/llama.h of the llama.cpp release that
// node-llama-cpp 3.21.1 bundles, and the program checks the library's
// default parameters against them before it quantizes anything.
//
// imatrix.bin (optional) is the importance matrix in a small format of this
// program's own (integers little-endian int64, floats IEEE binary32):
// the 8 bytes "AQIMTX01", the entry count, then per entry the name length,
// the name (a GGUF tensor name, e.g. "blk.0.ffn_down.weight"), the value
// count and the values (one per input column of the tensor).
//
// Exit status 0 when the file was written; otherwise a message on stderr
// (after libllama's own log, which goes to stderr too) and status 1.
#include <dlfcn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// GGML_TYPE_COUNT of this ggml version (ggml/include/ggml.h).
#define TYPE_COUNT 43
// LLAMA_QUANT_MAX_BUF_SIZE (src/llama-quant.cpp): the default max_buf_size.
#define MAX_BUF_SIZE (8ull * 1024 * 1024 * 1024)
// LLAMA_FTYPE_MOSTLY_Q8_0, the default ftype.
#define FTYPE_Q8_0 7

// struct llama_model_imatrix_data (include/llama.h).
struct imatrix_entry {
    const char *name;
    const float *data;
    size_t size;
};

// struct llama_model_quantize_params (include/llama.h); enums are ints.
struct quantize_params {
    int32_t nthread;
    int ftype;
    int output_tensor_type;
    int token_embedding_type;
    bool allow_requantize;
    bool quantize_output_tensor;
    bool only_copy;
    bool pure;
    bool keep_split;
    bool dry_run;
    const struct imatrix_entry *imatrix;
    const void *kv_overrides;
    const void *tt_overrides;
    const int32_t *prune_layers;
    size_t max_buf_size;
};

typedef struct quantize_params (*default_params_fn)(void);
typedef uint32_t (*quantize_fn)(const char *src, const char *dst, const struct quantize_params *p);
typedef void (*backend_init_fn)(void);

static void die(const char *msg, const char *arg) {
    fprintf(stderr, "llama_quantize: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    exit(1);
}

static void *sym(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (!p) die("missing symbol", name);
    return p;
}

static int64_t read_i64(FILE *f, const char *path) {
    int64_t v;
    if (fread(&v, sizeof v, 1, f) != 1) die("imatrix file is truncated", path);
    return v;
}

// read_imatrix loads the file into a NULL-name-terminated entry array.
static struct imatrix_entry *read_imatrix(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open the imatrix file", path);
    char magic[8];
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "AQIMTX01", 8) != 0) die("not an imatrix file of this program", path);
    int64_t n = read_i64(f, path);
    if (n < 0 || n > (1 << 24)) die("bad imatrix entry count", path);
    struct imatrix_entry *e = calloc((size_t)n + 1, sizeof *e);
    if (!e) die("out of memory", NULL);
    for (int64_t i = 0; i < n; i++) {
        int64_t len = read_i64(f, path);
        if (len <= 0 || len > 4096) die("bad imatrix name length", path);
        char *name = calloc((size_t)len + 1, 1);
        if (!name || fread(name, 1, (size_t)len, f) != (size_t)len) die("imatrix file is truncated", path);
        int64_t cnt = read_i64(f, path);
        if (cnt <= 0 || cnt > (1 << 28)) die("bad imatrix value count", path);
        float *data = malloc((size_t)cnt * sizeof(float));
        if (!data || fread(data, sizeof(float), (size_t)cnt, f) != (size_t)cnt) die("imatrix file is truncated", path);
        e[i].name = name;
        e[i].data = data;
        e[i].size = (size_t)cnt;
    }
    fclose(f);
    return e;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: llama_quantize <libllama.so> <src.gguf> <dst.gguf> <ftype> <nthread> [imatrix.bin]\n");
        return 1;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) die("dlopen", dlerror());
    default_params_fn defaults = (default_params_fn)sym(lib, "llama_model_quantize_default_params");
    quantize_fn quantize = (quantize_fn)sym(lib, "llama_model_quantize");
    backend_init_fn backend_init = (backend_init_fn)sym(lib, "llama_backend_init");

    struct quantize_params p = defaults();
    // The declarations above must match the library: its defaults say so.
    if (p.nthread != 0 || p.ftype != FTYPE_Q8_0 || p.output_tensor_type != TYPE_COUNT ||
        p.token_embedding_type != TYPE_COUNT || p.allow_requantize || !p.quantize_output_tensor ||
        p.only_copy || p.pure || p.keep_split || p.dry_run || p.imatrix || p.kv_overrides ||
        p.tt_overrides || p.prune_layers || p.max_buf_size != MAX_BUF_SIZE) {
        die("llama_model_quantize_default_params does not match this program's struct layout", argv[1]);
    }
    char *end;
    long ftype = strtol(argv[4], &end, 10);
    if (*end || ftype < 0) die("bad ftype", argv[4]);
    long nthread = strtol(argv[5], &end, 10);
    if (*end || nthread < 0) die("bad nthread", argv[5]);
    p.ftype = (int)ftype;
    p.nthread = (int32_t)nthread;
    if (argc == 7) p.imatrix = read_imatrix(argv[6]);

    backend_init();
    if (quantize(argv[2], argv[3], &p) != 0) die("llama_model_quantize failed", argv[2]);
    return 0;
}

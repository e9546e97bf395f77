// imatrix_oracle: llama.cpp's own importance-matrix code as an oracle for
// adaptq's imatrix files (gguf/imatrix.go). Built with g++ at test time by
// gguf/imatrix_oracle_test.go; it loads node-llama-cpp's prebuilt libraries
// with dlopen and never links llama.cpp's sources.
//
//   imatrix_oracle <libdir> load <file>
//       reads <file> with llama.cpp's loader (common_imatrix_load in
//       libllama-common, the function llama-quantize --imatrix uses) and
//       prints one line per entry, sorted by name:
//         entry <name> <nsums> <ncounts> <sum0> <sum1> ... <count0> ...
//       then "meta <is_legacy> <has_metadata> <chunk_count> <chunk_size>
//       <n datasets>" and "dataset <name>" lines. Floats are printed with
//       %a (exact).
//   imatrix_oracle <libdir> write <file>
//       writes a small imatrix with libggml-base's GGUF writer in the
//       layout llama-imatrix uses (general.type, imatrix.datasets,
//       imatrix.chunk_count, imatrix.chunk_size, <w>.in_sum2 [cols, mats],
//       <w>.counts [1, mats], F32) and prints its entries like "load".
//
// The declarations below restate the ABI of the structs and functions used
// (llama.cpp's common/imatrix-loader.h and ggml's gguf.h of the version
// node-llama-cpp 3.21.1 ships).

#include <dlfcn.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

struct common_imatrix_entry {
    std::vector<float>   sums;
    std::vector<int64_t> counts;
};

struct common_imatrix {
    std::map<std::string, common_imatrix_entry> entries;
    std::vector<std::string> datasets;
    int32_t chunk_count  = 0;
    int32_t chunk_size   = 0;
    bool    is_legacy    = false;
    bool    has_metadata = false;
};

typedef bool (*load_fn)(const std::string &, common_imatrix &);

// ggml / gguf C API (opaque handles).
struct ggml_init_params { size_t mem_size; void * mem_buffer; bool no_alloc; };
typedef void * (*ggml_init_fn)(ggml_init_params);
typedef void * (*ggml_new_tensor_2d_fn)(void *, int, int64_t, int64_t);
typedef void * (*ggml_set_name_fn)(void *, const char *);
typedef void * (*ggml_get_data_fn)(void *);
typedef void * (*gguf_init_empty_fn)(void);
typedef void (*gguf_set_val_str_fn)(void *, const char *, const char *);
typedef void (*gguf_set_val_u32_fn)(void *, const char *, uint32_t);
typedef void (*gguf_set_arr_str_fn)(void *, const char *, const char **, size_t);
typedef void (*gguf_add_tensor_fn)(void *, const void *);
typedef bool (*gguf_write_to_file_fn)(const void *, const char *, bool);

static void * sym(void * h, const char * name) {
    void * p = dlsym(h, name);
    if (!p) {
        fprintf(stderr, "imatrix_oracle: %s not found: %s\n", name, dlerror());
        exit(2);
    }
    return p;
}

static void * open_lib(const std::string & dir, const char * name) {
    std::string path = dir + "/" + name;
    void * h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        fprintf(stderr, "imatrix_oracle: dlopen %s: %s\n", path.c_str(), dlerror());
        exit(2);
    }
    return h;
}

static int print_loaded(void * common, const char * file) {
    load_fn load = (load_fn) sym(common, "_Z19common_imatrix_loadRKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEER14common_imatrix");
    common_imatrix im;
    if (!load(std::string(file), im)) {
        printf("error load failed\n");
        return 1;
    }
    for (const auto & kv : im.entries) {
        printf("entry %s %zu %zu", kv.first.c_str(), kv.second.sums.size(), kv.second.counts.size());
        for (float v : kv.second.sums) printf(" %a", (double) v);
        for (int64_t c : kv.second.counts) printf(" %lld", (long long) c);
        printf("\n");
    }
    printf("meta %d %d %d %d %zu\n", im.is_legacy, im.has_metadata, im.chunk_count, im.chunk_size, im.datasets.size());
    for (const auto & d : im.datasets) printf("dataset %s\n", d.c_str());
    return 0;
}

static int write_file(void * base, const char * file) {
    auto ggml_init = (ggml_init_fn) sym(base, "ggml_init");
    auto new2d = (ggml_new_tensor_2d_fn) sym(base, "ggml_new_tensor_2d");
    auto set_name = (ggml_set_name_fn) sym(base, "ggml_set_name");
    auto get_data = (ggml_get_data_fn) sym(base, "ggml_get_data");
    auto init_empty = (gguf_init_empty_fn) sym(base, "gguf_init_empty");
    auto set_str = (gguf_set_val_str_fn) sym(base, "gguf_set_val_str");
    auto set_u32 = (gguf_set_val_u32_fn) sym(base, "gguf_set_val_u32");
    auto set_arr_str = (gguf_set_arr_str_fn) sym(base, "gguf_set_arr_str");
    auto add_tensor = (gguf_add_tensor_fn) sym(base, "gguf_add_tensor");
    auto write = (gguf_write_to_file_fn) sym(base, "gguf_write_to_file");

    void * ctx = ggml_init({1 << 20, nullptr, false});
    void * g = init_empty();
    set_str(g, "general.type", "imatrix");
    const char * ds[] = {"calibration.txt"};
    set_arr_str(g, "imatrix.datasets", ds, 1);
    set_u32(g, "imatrix.chunk_count", 3);
    set_u32(g, "imatrix.chunk_size", 512);
    struct { const char * name; int cols, mats; } ws[] = {
        {"blk.0.attn_q.weight", 8, 1}, {"blk.0.ffn_down.weight", 16, 1}, {"blk.1.ffn_up_exps.weight", 4, 3}};
    for (auto & w : ws) {
        std::string n2 = std::string(w.name) + ".in_sum2", nc = std::string(w.name) + ".counts";
        void * s2 = new2d(ctx, 0 /* GGML_TYPE_F32 */, w.cols, w.mats);
        void * c = new2d(ctx, 0, 1, w.mats);
        set_name(s2, n2.c_str());
        set_name(c, nc.c_str());
        float * sd = (float *) get_data(s2);
        float * cd = (float *) get_data(c);
        for (int i = 0; i < w.cols * w.mats; i++) sd[i] = 0.25f * (float) (i + 1) + (float) w.cols;
        for (int m = 0; m < w.mats; m++) cd[m] = (float) (1536 - 7 * m);
        add_tensor(g, s2);
        add_tensor(g, c);
    }
    if (!write(g, file, false)) {
        printf("error write failed\n");
        return 1;
    }
    return 0;
}

int main(int argc, char ** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: imatrix_oracle <libdir> load|write <file>\n");
        return 2;
    }
    std::string dir = argv[1], op = argv[2];
    void * base = open_lib(dir, "libggml-base.so");
    void * common = open_lib(dir, "libllama-common.so");
    if (op == "write") {
        int rc = write_file(base, argv[3]);
        if (rc != 0) return rc;
        return print_loaded(common, argv[3]);
    }
    if (op == "load") return print_loaded(common, argv[3]);
    fprintf(stderr, "imatrix_oracle: unknown op %s\n", op.c_str());
    return 2;
}

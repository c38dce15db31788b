// The plugin's bridge to FAISS's C++ API: plain C functions over an
// IndexIDMap2 that owns the index inside it. Every function catches what
// FAISS throws and copies its message into `err` (NUL-terminated, at most
// `errlen` bytes), returning a failure value instead; no exception crosses
// into Rust.
//
// Index files are a small header (written and read back verbatim for the
// caller) followed by FAISS's own serialisation of the IndexIDMap2.

#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <unistd.h>

using faiss::Index;
using faiss::IndexIDMap2;
typedef faiss::Index::idx_t idx_t;

namespace {

void set_err(char* err, size_t errlen, const char* msg) {
    if (err == nullptr || errlen == 0) return;
    std::strncpy(err, msg, errlen - 1);
    err[errlen - 1] = '\0';
}

template <typename F>
int guard(char* err, size_t errlen, F f) {
    try {
        f();
        return 0;
    } catch (const faiss::FaissException& e) {
        // FAISS's what() includes the source location; its msg is the reason.
        set_err(err, errlen, e.msg.c_str());
    } catch (const std::exception& e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown C++ exception");
    }
    return -1;
}

IndexIDMap2* as_map(void* p) { return static_cast<IndexIDMap2*>(p); }

}  // namespace

extern "C" {

// A new empty index: `description` in index_factory's language ("Flat",
// "HNSW32", "IVF256,Flat"), wrapped in an IndexIDMap2 that keeps ids.
// metric: 0 inner product, 1 L2.
void* bp_faiss_new(const char* description, int dimension, int metric, char* err, size_t errlen) {
    IndexIDMap2* out = nullptr;
    guard(err, errlen, [&] {
        faiss::MetricType m = metric == 0 ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2;
        Index* inner = faiss::index_factory(dimension, description, m);
        out = new IndexIDMap2(inner);
        out->own_fields = true;
    });
    return out;
}

void bp_faiss_free(void* index) { delete as_map(index); }

// Search parameters of the inner index: HNSW's efSearch, IVF's nprobe
// (each ignored where the index has none).
void bp_faiss_tune(void* index, int ef_construction, int ef_search, int nprobe) {
    Index* inner = as_map(index)->index;
    if (auto* h = dynamic_cast<faiss::IndexHNSW*>(inner)) {
        if (ef_construction > 0) h->hnsw.efConstruction = ef_construction;
        if (ef_search > 0) h->hnsw.efSearch = ef_search;
    }
    if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(inner)) {
        if (nprobe > 0) ivf->nprobe = nprobe;
    }
}

// 1 when ids can be removed (flat indexes); 0 otherwise. HNSW cannot
// remove at all; an IVF index can, but it keeps the positions it numbered
// its entries with while the id map around it closes its gaps, so after a
// removal the map would give wrong ids: the plugin leaves removed entries
// in both and skips them instead.
int bp_faiss_can_remove(void* index) {
    return dynamic_cast<faiss::IndexFlat*>(as_map(index)->index) != nullptr ? 1 : 0;
}

int bp_faiss_is_trained(void* index) { return as_map(index)->is_trained ? 1 : 0; }

int bp_faiss_train(void* index, long n, const float* x, char* err, size_t errlen) {
    return guard(err, errlen, [&] { as_map(index)->train(n, x); });
}

int bp_faiss_add(void* index, long n, const float* x, const long* ids, char* err, size_t errlen) {
    return guard(err, errlen, [&] {
        as_map(index)->add_with_ids(n, x, reinterpret_cast<const idx_t*>(ids));
    });
}

// Removes `ids`; the number removed, or -1.
long bp_faiss_remove(void* index, long n, const long* ids, char* err, size_t errlen) {
    long removed = -1;
    guard(err, errlen, [&] {
        faiss::IDSelectorArray sel(n, reinterpret_cast<const idx_t*>(ids));
        removed = static_cast<long>(as_map(index)->remove_ids(sel));
    });
    return removed;
}

int bp_faiss_search(void* index, long n, const float* x, long k, float* distances, long* labels,
                    char* err, size_t errlen) {
    return guard(err, errlen, [&] {
        as_map(index)->search(n, x, k, distances, reinterpret_cast<idx_t*>(labels));
    });
}

long bp_faiss_ntotal(void* index) { return static_cast<long>(as_map(index)->ntotal); }

int bp_faiss_dimension(void* index) { return as_map(index)->d; }

// 0 inner product, 1 L2, 2 anything else.
int bp_faiss_metric(void* index) {
    switch (as_map(index)->metric_type) {
        case faiss::METRIC_INNER_PRODUCT: return 0;
        case faiss::METRIC_L2: return 1;
        default: return 2;
    }
}

// Copies the ids held (ntotal of them) into `out`.
void bp_faiss_ids(void* index, long* out) {
    IndexIDMap2* m = as_map(index);
    for (size_t i = 0; i < m->id_map.size(); i++) out[i] = static_cast<long>(m->id_map[i]);
}

// Writes `header` then the index to `path`, flushed and fsynced.
int bp_faiss_write(void* index, const char* path, const unsigned char* header, size_t header_len,
                   char* err, size_t errlen) {
    return guard(err, errlen, [&] {
        FILE* f = std::fopen(path, "wb");
        if (f == nullptr) throw std::runtime_error(std::string("cannot create ") + path + ": " + std::strerror(errno));
        try {
            if (std::fwrite(header, 1, header_len, f) != header_len)
                throw std::runtime_error(std::string("cannot write ") + path + ": " + std::strerror(errno));
            faiss::write_index(as_map(index), f);
            if (std::fflush(f) != 0 || fsync(fileno(f)) != 0)
                throw std::runtime_error(std::string("cannot flush ") + path + ": " + std::strerror(errno));
        } catch (...) {
            std::fclose(f);
            throw;
        }
        if (std::fclose(f) != 0)
            throw std::runtime_error(std::string("cannot close ") + path + ": " + std::strerror(errno));
    });
}

// Reads an index file: its first `header_len` bytes into `header`, then the
// index, which must be an IndexIDMap2 (what bp_faiss_write wrote).
void* bp_faiss_read(const char* path, unsigned char* header, size_t header_len, char* err, size_t errlen) {
    IndexIDMap2* out = nullptr;
    guard(err, errlen, [&] {
        FILE* f = std::fopen(path, "rb");
        if (f == nullptr) throw std::runtime_error(std::string("cannot open ") + path + ": " + std::strerror(errno));
        Index* idx = nullptr;
        try {
            if (std::fread(header, 1, header_len, f) != header_len)
                throw std::runtime_error("the file is shorter than its header");
            idx = faiss::read_index(f);
        } catch (...) {
            std::fclose(f);
            throw;
        }
        std::fclose(f);
        out = dynamic_cast<IndexIDMap2*>(idx);
        if (out == nullptr) {
            delete idx;
            throw std::runtime_error("the file holds a FAISS index without an id map");
        }
    });
    return out;
}

}  // extern "C"

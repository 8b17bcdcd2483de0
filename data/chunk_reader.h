// Direct chunk reads (private to data/): a patch is assembled from whole chunks fetched raw with
// H5Dread_chunk and decoded (inflate, unshuffle) by the calling thread outside HDF5's global
// lock, through a decoded-chunk cache shared by all of a store's datasets. Used for chunked
// datasets whose filters are shuffle and/or deflate or LZ4; anything else goes through H5Dread.
// Without a cache, unfiltered chunks of a plain local file are not fetched whole: only the span of
// each chunk the patch needs is read from the file at the chunk's address.
#pragma once

#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace vitruvian::data::h5 {

/// How a chunked dataset stores its chunks.
struct ChunkLayout {
  std::vector<hsize_t> dims, chunk;
  std::size_t element_bytes = 0;
  bool shuffle = false, deflate = false;  ///< the pipeline: shuffle (first) then deflate or LZ4
  bool lz4 = false;  ///< HDF5's registered LZ4 filter (id 32004, the hdf5-filter-plugin format)
  /// Unfiltered chunks in a file HDF5 reads through its default (sec2) driver, with no user
  /// block: the file's descriptor, owned by HDF5 and valid while the dataset is open. The bytes a
  /// patch needs are read from it at each chunk's address. -1 otherwise.
  int fd = -1;
  bool filtered() const { return shuffle || deflate || lz4; }
  std::size_t chunk_bytes() const;
};

/// The layout of `dataset` when this reader can decode it: chunked, with no filters or only
/// shuffle and then deflate or LZ4. nullopt otherwise (contiguous, compact, other filters).
/// For unfiltered chunks it also finds the file's descriptor when the spans can be read directly.
/// Hdf5Error naming `subject` when HDF5 cannot tell (a damaged object header).
std::optional<ChunkLayout> decodable_layout(hid_t dataset, std::size_t element_bytes, const std::string& subject);

/// A chunk: which dataset (a number the store gives each open dataset) and which chunk (its
/// index in C order over the chunk grid).
struct ChunkKey {
  std::size_t dataset;
  std::uint64_t chunk;
  bool operator==(const ChunkKey& other) const noexcept { return dataset == other.dataset && chunk == other.chunk; }
};

struct ChunkKeyHash {
  std::size_t operator()(const ChunkKey& k) const noexcept { return k.dataset * 0x9E3779B97F4A7C15ull ^ k.chunk; }
};

/// Decoded chunks, least recently used dropped first once `capacity_bytes` is exceeded.
/// Thread-safe; chunks are shared read-only.
class ChunkCache {
 public:
  explicit ChunkCache(std::size_t capacity_bytes) : capacity_(capacity_bytes) {}
  std::shared_ptr<const std::vector<char>> find(const ChunkKey& key);
  void insert(const ChunkKey& key, std::shared_ptr<const std::vector<char>> chunk);

 private:
  using Entry = std::pair<ChunkKey, std::shared_ptr<const std::vector<char>>>;
  std::mutex mutex_;
  std::size_t capacity_, bytes_ = 0;
  std::list<Entry> order_;  ///< most recent first
  std::unordered_map<ChunkKey, std::list<Entry>::iterator, ChunkKeyHash> index_;
};

/// Reads the box [offset, offset + count) (all `layout.dims.size()` dimensions) into `out`, a
/// C-order buffer of prod(count) elements. `dataset_number` names the dataset in `cache` (may be
/// null).
/// Throws Hdf5Error / InputError naming `subject` for a chunk that cannot be read or decoded.
void read_box_by_chunks(hid_t dataset, const ChunkLayout& layout, ChunkCache* cache, std::size_t dataset_number,
                        const std::vector<hsize_t>& offset, const std::vector<hsize_t>& count, void* out,
                        const std::string& subject);

}  // namespace vitruvian::data::h5

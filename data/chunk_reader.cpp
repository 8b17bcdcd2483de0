// Direct chunk reads: raw chunk bytes from HDF5, zlib inflate and byte unshuffle here, then the
// overlap of each chunk with the box copied row by row.
#include "data/chunk_reader.h"

#include <ATen/Parallel.h>
#include <H5Zpublic.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <lz4.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/errors.h"
#include "data/hdf5.h"
#include "data/hdf5_handle.h"

namespace vitruvian::data::h5 {
namespace {

constexpr hsize_t kSpanChunksMax = 4096;  ///< chunks in a dataset read by spans (see decodable_layout)

std::uint64_t big_endian(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

/// Decodes one chunk of HDF5's LZ4 filter: an 8-byte big-endian original size, a 4-byte
/// big-endian block size, then per block a 4-byte big-endian compressed size and the block
/// (stored raw when that size equals the block's).
std::vector<char> lz4_decode(const std::vector<char>& raw, std::size_t bytes, const std::vector<hsize_t>& chunk_offset,
                             const std::string& subject) {
  auto corrupt = [&](const std::string& what) {
    return InputError(subject, fmt::format("an LZ4 chunk at offset {} {}; the file is corrupt", fmt::join(chunk_offset, ","), what));
  };
  if (raw.size() < 12) throw corrupt("is shorter than its header");
  const std::uint64_t total = big_endian(raw.data(), 8);
  const std::uint64_t block = big_endian(raw.data() + 8, 4);
  if (total != bytes || block == 0) throw corrupt(fmt::format("declares {} bytes in blocks of {}; expected {}", total, block, bytes));
  std::vector<char> out(bytes);
  std::size_t in = 12, written = 0;
  while (written < bytes) {
    const std::size_t want = std::min<std::size_t>(block, bytes - written);
    if (in + 4 > raw.size()) throw corrupt("ends inside a block header");
    const std::size_t size = big_endian(raw.data() + in, 4);
    in += 4;
    if (in + size > raw.size()) throw corrupt("ends inside a block");
    if (size == want) {
      std::memcpy(out.data() + written, raw.data() + in, want);
    } else {
      const int got = LZ4_decompress_safe(raw.data() + in, out.data() + written, static_cast<int>(size), static_cast<int>(want));
      if (got != static_cast<int>(want)) throw corrupt("does not decompress to its block size");
    }
    in += size;
    written += want;
  }
  return out;
}

/// Inverse of HDF5's shuffle filter: byte plane b holds byte b of every element.
void unshuffle(const char* in, char* out, std::size_t bytes, std::size_t element_bytes) {
  const std::size_t n = bytes / element_bytes;
  for (std::size_t b = 0; b < element_bytes; ++b) {
    const char* plane = in + b * n;
    for (std::size_t i = 0; i < n; ++i) out[i * element_bytes + b] = plane[i];
  }
  std::memcpy(out + n * element_bytes, in + n * element_bytes, bytes - n * element_bytes);  // leftover bytes
}

/// InputError unless an unfiltered chunk stores exactly its `bytes`.
void check_unfiltered_size(hsize_t stored, std::size_t bytes, const std::vector<hsize_t>& chunk_offset,
                           const std::string& subject) {
  if (stored == bytes) return;
  throw InputError(subject,
                   fmt::format("an unfiltered chunk at offset {} holds {} bytes; expected {}; the file is corrupt",
                               fmt::join(chunk_offset, ","), stored, bytes));
}

/// The decoded bytes of the chunk whose first element is at `chunk_offset`.
std::shared_ptr<const std::vector<char>> load_chunk(hid_t dataset, const ChunkLayout& layout,
                                                    const std::vector<hsize_t>& chunk_offset, const std::string& subject) {
  const std::size_t bytes = layout.chunk_bytes();
  auto decoded = std::make_shared<std::vector<char>>(bytes);
  hsize_t stored = 0;
  check_hdf5(H5Dget_chunk_storage_size(dataset, chunk_offset.data(), &stored), "H5Dget_chunk_storage_size", subject);
  if (stored == 0) {  // never written: the fill value, zero in this format
    std::memset(decoded->data(), 0, bytes);
    return decoded;
  }
  std::uint32_t skipped = 0;  // bit i set: filter i of the pipeline was not applied to this chunk
  if (!layout.filtered()) {   // the file's bytes are the chunk: read in place
    check_unfiltered_size(stored, bytes, chunk_offset, subject);
    check_hdf5(H5Dread_chunk(dataset, H5P_DEFAULT, chunk_offset.data(), &skipped, decoded->data()), "H5Dread_chunk",
               subject);
    return decoded;
  }
  std::vector<char> raw(stored);
  check_hdf5(H5Dread_chunk(dataset, H5P_DEFAULT, chunk_offset.data(), &skipped, raw.data()), "H5Dread_chunk", subject);
  // Filters run in reverse of the write order: deflate or LZ4 (if applied), then shuffle.
  const unsigned shuffle_bit = 0, deflate_bit = layout.shuffle ? 1 : 0;
  std::vector<char> inflated;
  const std::vector<char>* current = &raw;
  if (layout.lz4 && (skipped & (1u << deflate_bit)) == 0) {
    inflated = lz4_decode(raw, bytes, chunk_offset, subject);
    current = &inflated;
  } else if (layout.deflate && (skipped & (1u << deflate_bit)) == 0) {
    inflated.resize(bytes);
    uLongf size = bytes;
    const int status = uncompress(reinterpret_cast<Bytef*>(inflated.data()), &size,
                                  reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()));
    if (status != Z_OK || size != bytes) {
      throw InputError(subject, fmt::format("a deflated chunk at offset {} does not inflate to {} bytes (zlib status {}); "
                                            "the file is corrupt",
                                            fmt::join(chunk_offset, ","), bytes, status));
    }
    current = &inflated;
  }
  if (current->size() != bytes) {
    throw InputError(subject, fmt::format("chunk at offset {} holds {} bytes; expected {}", fmt::join(chunk_offset, ","),
                                          current->size(), bytes));
  }
  if (layout.shuffle && (skipped & (1u << shuffle_bit)) == 0) {
    unshuffle(current->data(), decoded->data(), bytes, layout.element_bytes);
  } else {
    std::memcpy(decoded->data(), current->data(), bytes);
  }
  return decoded;
}

/// Copies one row of a patch. Rows of small patches are short (128 bytes for 64 int16 voxels, and
/// a chunk boundary splits them further), so for them fixed-size copies the compiler inlines
/// beat a call to memcpy per row.
inline void copy_row(char* to, const char* from, std::size_t n) {
  if (n > 512) {
    std::memcpy(to, from, n);
    return;
  }
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) std::memcpy(to + i, from + i, 32);
  if (i + 16 <= n) std::memcpy(to + i, from + i, 16), i += 16;
  if (i + 8 <= n) std::memcpy(to + i, from + i, 8), i += 8;
  if (i + 4 <= n) std::memcpy(to + i, from + i, 4), i += 4;
  if (i + 2 <= n) std::memcpy(to + i, from + i, 2), i += 2;
  if (i < n) to[i] = from[i];
}

/// Steps `index` through the box [lo, end) over its first `dims` dimensions, the last of them
/// fastest. False (and `index` back at `lo`) after the last position.
bool advance(std::vector<hsize_t>& index, const std::vector<hsize_t>& lo, const std::vector<hsize_t>& end,
             std::size_t dims) {
  for (std::size_t d = dims; d > 0; --d) {
    if (++index[d - 1] < end[d - 1]) return true;
    index[d - 1] = lo[d - 1];
  }
  return false;
}

/// The descriptor of the file holding `dataset` when chunk addresses are offsets into it: the file
/// is read through HDF5's default driver (sec2) and has no user block. -1 otherwise, and when HDF5
/// cannot tell (the spans are a shortcut; without them the chunks are read through HDF5).
int file_descriptor(hid_t dataset) {
  const Handle file(H5Iget_file_id(dataset), H5Fclose);
  if (file.get() < 0) return -1;
  const Handle access(H5Fget_access_plist(file.get()), H5Pclose), creation(H5Fget_create_plist(file.get()), H5Pclose);
  hsize_t user_block = 0;
  void* handle = nullptr;
  if (access.get() < 0 || creation.get() < 0 || H5Pget_driver(access.get()) != H5FD_SEC2 ||
      H5Pget_userblock(creation.get(), &user_block) < 0 || user_block != 0 ||
      H5Fget_vfd_handle(file.get(), H5P_DEFAULT, &handle) < 0 || handle == nullptr) {
    H5Eclear2(H5E_DEFAULT);
    return -1;
  }
  return *static_cast<const int*>(handle);
}

/// Reads elements [first, last) (C order within the chunk) of the unfiltered chunk whose first
/// element is at `chunk_offset` into `buffer`, straight from the file; zeros (the fill value)
/// for a chunk never written.
void read_span(hid_t dataset, const ChunkLayout& layout, const std::vector<hsize_t>& chunk_offset, std::size_t first,
               std::size_t last, char* buffer, const std::string& subject) {
  unsigned mask = 0;
  haddr_t address = HADDR_UNDEF;
  hsize_t stored = 0;
  check_hdf5(H5Dget_chunk_info_by_coord(dataset, chunk_offset.data(), &mask, &address, &stored),
             "H5Dget_chunk_info_by_coord", subject);
  const std::size_t bytes = (last - first) * layout.element_bytes;
  if (stored == 0 || address == HADDR_UNDEF) {
    std::memset(buffer, 0, bytes);
    return;
  }
  check_unfiltered_size(stored, layout.chunk_bytes(), chunk_offset, subject);
  const std::uint64_t start = address + first * layout.element_bytes;
  for (std::size_t done = 0; done < bytes;) {
    const ssize_t got = pread(layout.fd, buffer + done, bytes - done, static_cast<off_t>(start + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      throw Hdf5Error("pread", fmt::format("{}: chunk at offset {}: {}", subject, fmt::join(chunk_offset, ","),
                                           std::strerror(errno)));
    }
    if (got == 0) {
      throw InputError(subject, fmt::format("a chunk at offset {} lies past the end of the file; the file is truncated",
                                            fmt::join(chunk_offset, ",")));
    }
    done += static_cast<std::size_t>(got);
  }
}

}  // namespace

std::size_t ChunkLayout::chunk_bytes() const {
  std::size_t n = element_bytes;
  for (const hsize_t c : chunk) n *= static_cast<std::size_t>(c);
  return n;
}

std::optional<ChunkLayout> decodable_layout(hid_t dataset, std::size_t element_bytes, const std::string& subject) {
  Handle dcpl = checked(H5Dget_create_plist(dataset), H5Pclose, "H5Dget_create_plist", subject);
  const H5D_layout_t kind = H5Pget_layout(dcpl.get());
  check_hdf5(kind, "H5Pget_layout", subject);
  if (kind != H5D_CHUNKED) return std::nullopt;
  ChunkLayout layout;
  layout.element_bytes = element_bytes;
  Handle space = checked(H5Dget_space(dataset), H5Sclose, "H5Dget_space", subject);
  layout.dims = extent(space.get(), subject);
  const int rank = static_cast<int>(layout.dims.size());
  if (rank < 1) return std::nullopt;
  layout.chunk.resize(layout.dims.size());
  const int chunk_rank = H5Pget_chunk(dcpl.get(), rank, layout.chunk.data());
  check_hdf5(chunk_rank, "H5Pget_chunk", subject);
  if (chunk_rank != rank) return std::nullopt;
  const auto pipeline = filters(dcpl.get(), subject);
  for (std::size_t f = 0; f < pipeline.size(); ++f) {
    const H5Z_filter_t id = pipeline[f].id;
    if (id == H5Z_FILTER_SHUFFLE && f == 0) {
      layout.shuffle = true;
    } else if (id == H5Z_FILTER_DEFLATE && !layout.deflate && !layout.lz4) {
      layout.deflate = true;
    } else if (id == kLz4Filter && !layout.deflate && !layout.lz4) {
      layout.lz4 = true;
    } else {
      return std::nullopt;  // another filter, or an order this reader does not undo
    }
  }
  if (!layout.filtered()) {
    // HDF5 1.10 finds a chunk's address (H5Dget_chunk_info_by_coord) by walking the dataset's
    // chunk index from its start: about 14 ns a chunk here, so a read of every chunk costs the
    // square of their number. Spans are kept to datasets of few chunks, where that walk costs
    // less than reading whole chunks.
    hsize_t chunks = 0;
    if (H5Dget_num_chunks(dataset, space.get(), &chunks) >= 0 && chunks <= kSpanChunksMax) {
      layout.fd = file_descriptor(dataset);
    }
    H5Eclear2(H5E_DEFAULT);
  }
  return layout;
}

std::shared_ptr<const std::vector<char>> ChunkCache::find(const ChunkKey& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  order_.splice(order_.begin(), order_, it->second);
  return it->second->second;
}

void ChunkCache::insert(const ChunkKey& key, std::shared_ptr<const std::vector<char>> chunk) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (index_.count(key) > 0 || chunk->size() > capacity_) return;
  bytes_ += chunk->size();
  order_.emplace_front(key, std::move(chunk));
  index_[key] = order_.begin();
  while (bytes_ > capacity_) {
    bytes_ -= order_.back().second->size();
    index_.erase(order_.back().first);
    order_.pop_back();
  }
}

void read_box_by_chunks(hid_t dataset, const ChunkLayout& layout, ChunkCache* cache, std::size_t dataset_number,
                        const std::vector<hsize_t>& offset, const std::vector<hsize_t>& count, void* out,
                        const std::string& subject) {
  const std::size_t rank = layout.dims.size(), e = layout.element_bytes;
  if (rank < 2) throw InputError(subject, "direct chunk reads need a dataset of 2 or more dimensions");
  // Chunk grid coordinates overlapping the box.
  std::vector<hsize_t> first(rank), end(rank);
  for (std::size_t d = 0; d < rank; ++d) {
    first[d] = offset[d] / layout.chunk[d];
    end[d] = (offset[d] + count[d] - 1) / layout.chunk[d] + 1;
  }
  std::vector<std::vector<hsize_t>> chunks;
  for (std::vector<hsize_t> at = first;;) {
    chunks.push_back(at);
    if (!advance(at, first, end, rank)) break;
  }
  // Strides (elements) of the output box and of a chunk.
  std::vector<std::size_t> out_stride(rank, 1), chunk_stride(rank, 1);
  for (std::size_t d = rank - 1; d > 0; --d) {
    out_stride[d - 1] = out_stride[d] * count[d];
    chunk_stride[d - 1] = chunk_stride[d] * layout.chunk[d];
  }
  // Without a cache, unfiltered chunks are read from the file: only the span from the box's first
  // element in the chunk to its last, into a buffer of the thread's own. With one, whole chunks
  // are kept, and repeats (a training rank's overlapping patches) copy from memory.
  const bool spans = cache == nullptr && layout.fd >= 0;  // a descriptor only for unfiltered chunks
  auto* target = static_cast<char*>(out);
  // The chunks of a large box are fetched, decoded and copied by the intra-op threads (HDF5
  // serialises its own calls; the reads, decoding and copies run side by side), each thread
  // writing its own part of `out`. A patch of a few chunks stays on the calling thread: there the
  // threads' start-up costs more than they share.
  constexpr std::int64_t kChunksPerThread = 16;
  const auto n_chunks = static_cast<std::int64_t>(chunks.size());
  at::parallel_for(0, n_chunks, kChunksPerThread, [&](std::int64_t begin, std::int64_t stop) {
    silence_hdf5_errors();  // per thread in thread-safe HDF5: its errors become one-line exceptions
    std::unique_ptr<char[]> span_buffer(spans ? new char[layout.chunk_bytes()] : nullptr);
    std::vector<hsize_t> chunk_offset(rank), lo(rank), hi(rank);
    for (std::int64_t c = begin; c < stop; ++c) {
      const std::vector<hsize_t>& cell = chunks[static_cast<std::size_t>(c)];
      for (std::size_t d = 0; d < rank; ++d) {
        chunk_offset[d] = cell[d] * layout.chunk[d];
        lo[d] = std::max(offset[d], chunk_offset[d]);
        hi[d] = std::min(offset[d] + count[d], chunk_offset[d] + layout.chunk[d]);
      }
      // `source` holds the chunk's elements from number `base` on (C order within the chunk).
      const char* source = nullptr;
      std::size_t base = 0;
      std::shared_ptr<const std::vector<char>> chunk;
      if (spans) {
        std::size_t last = 1;
        for (std::size_t d = 0; d < rank; ++d) {
          base += (lo[d] - chunk_offset[d]) * chunk_stride[d];
          last += (hi[d] - 1 - chunk_offset[d]) * chunk_stride[d];
        }
        read_span(dataset, layout, chunk_offset, base, last, span_buffer.get(), subject);
        source = span_buffer.get();
      } else {
        ChunkKey chunk_key{dataset_number, 0};
        for (std::size_t d = 0; d < rank; ++d) {
          chunk_key.chunk = chunk_key.chunk * ((layout.dims[d] + layout.chunk[d] - 1) / layout.chunk[d]) + cell[d];
        }
        if (cache != nullptr) chunk = cache->find(chunk_key);
        if (!chunk) {
          chunk = load_chunk(dataset, layout, chunk_offset, subject);
          if (cache != nullptr) cache->insert(chunk_key, chunk);
        }
        source = chunk->data();
      }
      // Copy the overlap row by row: an odometer over the outer dimensions, then a tight loop
      // over the rows of one plane (rows run along the last dimension).
      const std::size_t y = rank - 2, x = rank - 1;
      const std::size_t row_bytes = (hi[x] - lo[x]) * e;
      const std::size_t src_step = chunk_stride[y] * e, dst_step = out_stride[y] * e;
      std::vector<hsize_t> plane(lo);
      do {
        std::size_t src = 0, dst = 0;
        for (std::size_t d = 0; d < rank; ++d) {
          src += (plane[d] - chunk_offset[d]) * chunk_stride[d];
          dst += (plane[d] - offset[d]) * out_stride[d];
        }
        const char* from = source + (src - base) * e;
        char* to = target + dst * e;
        for (hsize_t row = lo[y]; row < hi[y]; ++row, from += src_step, to += dst_step) copy_row(to, from, row_bytes);
      } while (advance(plane, lo, hi, y));
    }
  });
}

}  // namespace vitruvian::data::h5

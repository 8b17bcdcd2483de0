// RAII handles and checked helpers over the HDF5 C API (attributes, links, extents, filters), for
// data/'s own .cpp files (this header pulls in <hdf5.h>; public headers of data/ do not).
#pragma once

#include <hdf5.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "data/hdf5.h"

namespace vitruvian::data::h5 {

/// Owns one hid_t and closes it with the matching H5?close. Move-only; the destructor never
/// throws (a failed close is ignored: there is nothing useful left to do with it).
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) noexcept : id_(id), close_(close) {}
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)), close_(other.close_) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      close_ = other.close_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const noexcept { return id_; }
  explicit operator bool() const noexcept { return id_ >= 0; }
  void reset() noexcept {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
    id_ = H5I_INVALID_HID;
  }
  /// Closes now and throws Hdf5Error naming `call` and `subject` if that fails (closing a file
  /// written to is where HDF5 writes its metadata: a failure there is a broken file).
  void close(const std::string& call, const std::string& subject) {
    const hid_t id = std::exchange(id_, H5I_INVALID_HID);
    if (id >= 0 && close_ != nullptr) check_hdf5(close_(id), call, subject);
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

/// Wraps a freshly returned id, throwing Hdf5Error (with HDF5's error stack) when it is invalid.
inline Handle checked(hid_t id, Handle::Closer close, const std::string& call, const std::string& subject) {
  check_hdf5(id, call, subject);
  return Handle(id, close);
}

/// HDF5's registered id of the LZ4 filter (Debian's hdf5-filter-plugin).
inline constexpr H5Z_filter_t kLz4Filter = 32004;

/// Whether `object` has the attribute / `location` the link `name`: false only when absent.
/// Hdf5Error naming `subject` when HDF5 cannot tell (a damaged object header or B-tree).
bool has_attribute(hid_t object, const char* name, const std::string& subject);
bool link_exists(hid_t location, const char* name, const std::string& subject);

/// The dimensions of a simple dataspace; Hdf5Error naming `subject` when HDF5 cannot read them.
std::vector<hsize_t> extent(hid_t space, const std::string& subject);

/// One filter of a dataset's pipeline, in pipeline order.
struct Filter {
  H5Z_filter_t id = H5Z_FILTER_NONE;
  std::string name;             ///< as stored ("" when none)
  std::vector<unsigned> values; ///< client data (the deflate level for deflate), up to 8
};
/// The filters of a dataset creation property list; Hdf5Error naming `subject` on failure.
std::vector<Filter> filters(hid_t dcpl, const std::string& subject);

/// Variable-length UTF-8 string attribute (what h5py reads back as str).
void write_string(hid_t object, const char* name, const std::string& value, const std::string& subject);
void write_strings(hid_t object, const char* name, const std::vector<std::string>& values, const std::string& subject);
/// float64 attribute of shape `dims` (e.g. {3} or {3, 3}).
void write_doubles(hid_t object, const char* name, const std::vector<double>& values, std::vector<hsize_t> dims,
                   const std::string& subject);
void write_ints(hid_t object, const char* name, const std::vector<long long>& values, const std::string& subject);

/// Readers return nullopt when the attribute is absent and throw InputError naming `subject`
/// when it exists with the wrong type or element count.
std::optional<std::string> read_string(hid_t object, const char* name, const std::string& subject);
std::optional<std::vector<std::string>> read_strings(hid_t object, const char* name, const std::string& subject);
std::optional<std::vector<double>> read_doubles(hid_t object, const char* name, const std::string& subject);
std::optional<std::vector<long long>> read_ints(hid_t object, const char* name, const std::string& subject);

/// Names of the links directly under `group`, in name order. Throws InputError naming `subject`
/// for an external or user-defined link (datasets must live in the file itself).
std::vector<std::string> list_links(hid_t group, const std::string& subject);

}  // namespace vitruvian::data::h5

// Attribute helpers, link and extent queries, filter listing over the HDF5 C API: every call's
// result checked.
#include "data/hdf5_handle.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/errors.h"

namespace vitruvian::data::h5 {
namespace {

Handle string_type(const std::string& subject) {
  Handle type = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy", subject);
  check_hdf5(H5Tset_size(type.get(), H5T_VARIABLE), "H5Tset_size", subject);
  check_hdf5(H5Tset_cset(type.get(), H5T_CSET_UTF8), "H5Tset_cset", subject);
  return type;
}

Handle open_attribute(hid_t object, const char* name, const std::string& subject) {
  return checked(H5Aopen(object, name, H5P_DEFAULT), H5Aclose, std::string("H5Aopen ") + name, subject);
}

hssize_t element_count(hid_t attribute, const char* name, const std::string& subject) {
  Handle space = checked(H5Aget_space(attribute), H5Sclose, std::string("H5Aget_space ") + name, subject);
  const hssize_t count = H5Sget_simple_extent_npoints(space.get());
  check_hdf5(count, std::string("H5Sget_simple_extent_npoints ") + name, subject);
  if (count > (1 << 20)) {
    throw InputError(subject, fmt::format("attribute '{}' has {} elements; expected a small array", name, count));
  }
  return count;
}

void create_and_write(hid_t object, const char* name, hid_t file_type, hid_t memory_type, const void* data,
                      const std::vector<hsize_t>& dims, const std::string& subject) {
  if (has_attribute(object, name, subject)) check_hdf5(H5Adelete(object, name), std::string("H5Adelete ") + name, subject);
  Handle space = checked(dims.empty() ? H5Screate(H5S_SCALAR)
                                      : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                         H5Sclose, "H5Screate", subject);
  Handle attribute = checked(H5Acreate2(object, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                             std::string("H5Acreate2 ") + name, subject);
  check_hdf5(H5Awrite(attribute.get(), memory_type, data), std::string("H5Awrite ") + name, subject);
}

/// The attribute's stored type, after checking it is of class `expected`.
Handle attribute_type(hid_t attribute, const char* name, H5T_class_t expected, const char* expected_text,
                      const std::string& subject) {
  Handle type = checked(H5Aget_type(attribute), H5Tclose, std::string("H5Aget_type ") + name, subject);
  const H5T_class_t type_class = H5Tget_class(type.get());
  check_hdf5(type_class, std::string("H5Tget_class ") + name, subject);
  if (type_class != expected) throw InputError(subject, fmt::format("attribute '{}' is not {}", name, expected_text));
  return type;
}

template <typename T>
std::optional<std::vector<T>> read_numbers(hid_t object, const char* name, hid_t memory_type, H5T_class_t expected,
                                           const char* expected_text, const std::string& subject) {
  if (!has_attribute(object, name, subject)) return std::nullopt;
  Handle attribute = open_attribute(object, name, subject);
  attribute_type(attribute.get(), name, expected, expected_text, subject);
  std::vector<T> values(static_cast<std::size_t>(element_count(attribute.get(), name, subject)));
  if (!values.empty()) check_hdf5(H5Aread(attribute.get(), memory_type, values.data()), std::string("H5Aread ") + name, subject);
  return values;
}

}  // namespace

bool has_attribute(hid_t object, const char* name, const std::string& subject) {
  const htri_t exists = H5Aexists(object, name);
  check_hdf5(exists, std::string("H5Aexists ") + name, subject);
  return exists > 0;
}

bool link_exists(hid_t location, const char* name, const std::string& subject) {
  const htri_t exists = H5Lexists(location, name, H5P_DEFAULT);
  check_hdf5(exists, std::string("H5Lexists ") + name, subject);
  return exists > 0;
}

std::vector<hsize_t> extent(hid_t space, const std::string& subject) {
  const int rank = H5Sget_simple_extent_ndims(space);
  check_hdf5(rank, "H5Sget_simple_extent_ndims", subject);
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  check_hdf5(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "H5Sget_simple_extent_dims", subject);
  return dims;
}

std::vector<Filter> filters(hid_t dcpl, const std::string& subject) {
  const int count = H5Pget_nfilters(dcpl);
  check_hdf5(count, "H5Pget_nfilters", subject);
  std::vector<Filter> out;
  for (int i = 0; i < count; ++i) {
    unsigned flags = 0, config = 0;
    std::size_t values = 8;
    unsigned data[8] = {};
    char name[64] = {};
    Filter filter;
    filter.id = H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &values, data, sizeof(name), name, &config);
    check_hdf5(filter.id, "H5Pget_filter2", subject);
    filter.name = name;
    filter.values.assign(data, data + std::min<std::size_t>(values, 8));
    out.push_back(std::move(filter));
  }
  return out;
}

void write_string(hid_t object, const char* name, const std::string& value, const std::string& subject) {
  Handle type = string_type(subject);
  const char* data = value.c_str();
  create_and_write(object, name, type.get(), type.get(), &data, {}, subject);
}

void write_strings(hid_t object, const char* name, const std::vector<std::string>& values, const std::string& subject) {
  Handle type = string_type(subject);
  std::vector<const char*> data;
  for (const auto& value : values) data.push_back(value.c_str());
  create_and_write(object, name, type.get(), type.get(), data.data(), {values.size()}, subject);
}

void write_doubles(hid_t object, const char* name, const std::vector<double>& values, std::vector<hsize_t> dims,
                   const std::string& subject) {
  create_and_write(object, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, values.data(), dims, subject);
}

void write_ints(hid_t object, const char* name, const std::vector<long long>& values, const std::string& subject) {
  create_and_write(object, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, values.data(), {values.size()}, subject);
}

std::optional<std::vector<std::string>> read_strings(hid_t object, const char* name, const std::string& subject) {
  if (!has_attribute(object, name, subject)) return std::nullopt;
  Handle attribute = open_attribute(object, name, subject);
  Handle type = attribute_type(attribute.get(), name, H5T_STRING, "a string", subject);
  const auto count = static_cast<std::size_t>(element_count(attribute.get(), name, subject));
  const htri_t variable = H5Tis_variable_str(type.get());
  check_hdf5(variable, std::string("H5Tis_variable_str ") + name, subject);
  std::vector<std::string> values;
  if (variable > 0) {
    Handle memory = string_type(subject);
    std::vector<char*> data(count, nullptr);
    check_hdf5(H5Aread(attribute.get(), memory.get(), data.data()), std::string("H5Aread ") + name, subject);
    for (char* text : data) values.emplace_back(text != nullptr ? text : "");
    Handle space = checked(H5Aget_space(attribute.get()), H5Sclose, std::string("H5Aget_space ") + name, subject);
    check_hdf5(H5Dvlen_reclaim(memory.get(), space.get(), H5P_DEFAULT, data.data()), "H5Dvlen_reclaim", subject);
  } else {  // fixed-length strings, as other writers (h5py's np.bytes_) may leave them
    const std::size_t size = H5Tget_size(type.get());
    if (size == 0) check_hdf5(-1, std::string("H5Tget_size ") + name, subject);
    std::vector<char> buffer(size * count + 1, '\0');
    check_hdf5(H5Aread(attribute.get(), type.get(), buffer.data()), std::string("H5Aread ") + name, subject);
    for (std::size_t i = 0; i < count; ++i) {
      std::string text(buffer.data() + i * size, size);
      text.erase(text.find_last_not_of('\0') + 1);
      values.push_back(text);
    }
  }
  return values;
}

std::optional<std::string> read_string(hid_t object, const char* name, const std::string& subject) {
  auto values = read_strings(object, name, subject);
  if (!values) return std::nullopt;
  if (values->size() != 1) throw InputError(subject, fmt::format("attribute '{}' holds {} strings; expected one", name, values->size()));
  return values->front();
}

std::optional<std::vector<double>> read_doubles(hid_t object, const char* name, const std::string& subject) {
  return read_numbers<double>(object, name, H5T_NATIVE_DOUBLE, H5T_FLOAT, "a floating-point array", subject);
}

std::optional<std::vector<long long>> read_ints(hid_t object, const char* name, const std::string& subject) {
  return read_numbers<long long>(object, name, H5T_NATIVE_LLONG, H5T_INTEGER, "an integer array", subject);
}

namespace {
struct LinkWalk {
  std::vector<std::string> names;
  std::string bad;
};

herr_t visit_link(hid_t, const char* name, const H5L_info_t* info, void* data) {
  auto* walk = static_cast<LinkWalk*>(data);
  if (info->type != H5L_TYPE_HARD && info->type != H5L_TYPE_SOFT) {
    walk->bad = name;
    return 1;  // stop
  }
  walk->names.emplace_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> list_links(hid_t group, const std::string& subject) {
  LinkWalk walk;
  check_hdf5(H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, nullptr, visit_link, &walk), "H5Literate", subject);
  if (!walk.bad.empty()) {
    throw InputError(subject, "'" + walk.bad + "' is an external link; expected every object inside the file itself "
                              "(external links, external and virtual datasets are refused)");
  }
  return walk.names;
}

}  // namespace vitruvian::data::h5

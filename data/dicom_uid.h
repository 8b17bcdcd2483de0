// Deterministic DICOM UIDs: a root plus one decimal component hashed from named parts, so that
// rerunning a job writes the same Study, Series, Frame of Reference and SOP Instance UIDs.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace vitruvian::data {

/// The project's default UID root (docs/PHANTOMS.md, "UIDs"). Sites exporting to a PACS of their
/// own pass their organisation's registered root instead (`--uid-root`).
inline constexpr const char* kDefaultUidRoot = "1.2.826.0.1.3680043.10.1147";

/// A UID holds at most this many characters (DICOM PS3.5 §9.1).
inline constexpr std::size_t kMaxUidLength = 64;
/// The hashed component has at least this many digits (about 2^63 values), so a root may use
/// at most kMaxUidLength - 1 - kMinUidHashDigits characters.
inline constexpr std::size_t kMinUidHashDigits = 20;

/// True when `uid` is a valid DICOM UID: 1 to 64 characters, components of digits separated by
/// single dots, no empty component, no leading zero in a component of more than one digit.
bool is_valid_uid(std::string_view uid);

/// Throws InputError naming `source` (e.g. "--uid-root 1.2.03") when `root` is not a valid UID
/// or leaves fewer than kMinUidHashDigits digits for the hashed component.
void check_uid_root(const std::string& root, const std::string& source);

/// `root` + "." + a decimal component hashed (128 bits) from `parts`, filling the UID up to 64
/// characters (at most 39 digits). The same root and parts give the same UID; different parts
/// (in order, with their boundaries) give different UIDs up to hash collisions. The component
/// never starts with 0. Throws InputError when `root` fails check_uid_root.
///   uid_from(root, {"study", "7", "head_neck_00001"})
std::string uid_from(const std::string& root, const std::vector<std::string>& parts);

}  // namespace vitruvian::data

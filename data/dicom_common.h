// Small pieces shared by the DICOM writers (series, SEG, SR). DCMTK types are only declared here.
#pragma once

#include <string>

class DcmItem;

namespace vitruvian::data {

/// A DICOM decimal string (DS: at most 16 characters): the shortest text that reads back as
/// `value` when it fits, else as many significant digits as fit; magnitudes below 5e-11 (rounding
/// noise in direction cosines) are written as 0.
std::string decimal_string(double value);

/// Gives a derived object's series the date and time of its content (SeriesDate/SeriesTime from
/// ContentDate/ContentTime; now when it has none), so viewers file it beside its source series.
void series_dated_as_content(DcmItem& dataset);

}  // namespace vitruvian::data

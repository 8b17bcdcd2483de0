// Small pieces shared by the DICOM writers.
#include "data/dicom_common.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/ofstd/ofdatime.h>
#include <fmt/format.h>

#include <cmath>

namespace vitruvian::data {

std::string decimal_string(double value) {
  if (std::abs(value) < 5e-11) value = 0.0;
  std::string text = fmt::format("{}", value);
  for (int digits = 15; text.size() > 16 && digits > 1; --digits) text = fmt::format("{:.{}g}", value, digits);
  return text.size() <= 16 ? text : fmt::format("{:.1e}", value);
}

void series_dated_as_content(DcmItem& dataset) {
  OFString date, time;
  if (dataset.findAndGetOFString(DCM_ContentDate, date).bad() || date.empty() ||
      dataset.findAndGetOFString(DCM_ContentTime, time).bad() || time.empty()) {
    const OFDateTime now = OFDateTime::getCurrentDateTime();
    now.getDate().getISOFormattedDate(date, false);
    now.getTime().getISOFormattedTime(time, true, false, false, false);
  }
  dataset.putAndInsertOFStringArray(DCM_SeriesDate, date);
  dataset.putAndInsertOFStringArray(DCM_SeriesTime, time);
}

}  // namespace vitruvian::data

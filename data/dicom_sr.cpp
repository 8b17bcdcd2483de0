// DICOM SR writing through DCMTK's TID 1500 classes: observer context, procedure, measurement
// groups with their SEG references, then the patient and study of the source.
#include "data/dicom_sr.h"

#include <fmt/format.h>

// clang-format off
#include <dcmtk/config/osconfig.h>  // DCMTK wants its configuration before any of its headers
// clang-format on
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmsr/cmr/tid1500.h>
#include <dcmtk/dcmsr/codes/dcm.h>
#include <dcmtk/dcmsr/dsrdoc.h>

#include "core/errors.h"
#include "data/dicom_common.h"

namespace vitruvian::data {
namespace {

namespace fs = std::filesystem;

void check(const OFCondition& status, const fs::path& path, const std::string& what) {
  if (status.bad()) throw InternalError(path.string(), fmt::format("DCMTK refused {}: {}", what, status.text()));
}

DSRCodedEntryValue coded(const CodedConcept& c) {
  return DSRCodedEntryValue(c.value.c_str(), c.scheme.c_str(), c.meaning.c_str());
}

/// The concept name of a qualitative evaluation (TID 1411 row 17, TID 1501 row 12).
DSRCodedEntryValue qualitative_evaluation() { return DSRCodedEntryValue("C0034375", "UMLS", "Qualitative Evaluations"); }

/// The group's qualitative evaluations, as TEXT items, on either group template.
template <typename Group>
void add_evaluations(Group& m, const SrGroup& g, const fs::path& path) {
  for (const std::string& text : g.evaluations) {
    check(m.addQualitativeEvaluation(qualitative_evaluation(), text.c_str()), path,
          "qualitative evaluation of " + g.tracking_id);
  }
}

/// A TID 1411 group: tracking, finding, the SEG segment, the source series, the measurements.
void add_volumetric(TID1500_MeasurementReport& report, const SrGroup& g, const fs::path& path) {
  check(report.addVolumetricROIMeasurements(), path, "a volumetric measurement group");
  auto& m = report.getVolumetricROIMeasurements();
  check(m.setTrackingIdentifier(g.tracking_id.substr(0, 64).c_str()), path, "tracking identifier " + g.tracking_id);
  check(m.setTrackingUniqueIdentifier(g.tracking_uid.c_str()), path, "tracking UID " + g.tracking_uid);
  check(m.setFinding(coded(g.finding)), path, "finding " + g.finding.meaning);
  if (g.finding_site) check(m.addFindingSite(coded(*g.finding_site)), path, "finding site");
  DSRImageReferenceValue segment(UID_SegmentationStorage, g.segmentation_uid.c_str());
  segment.getSegmentList().addItem(g.segment);
  check(m.setReferencedSegment(segment), path, fmt::format("segment {} of {}", g.segment, g.segmentation_uid));
  check(m.setSourceSeriesForSegmentation(g.source_series_uid.c_str()), path, "source series " + g.source_series_uid);
  for (const SrMeasurement& x : g.measurements) {
    const CMR_TID1411_in_TID1500::MeasurementValue value(
        decimal_string(x.value).c_str(), CID7181_AbstractMultiDimensionalImageModelComponentUnits(coded(x.unit)));
    check(m.addMeasurement(CID7469_GenericIntensityAndSizeMeasurements(coded(x.concept_name)), value), path,
          x.concept_name.meaning + " of " + g.tracking_id);
    auto& measurement = m.getMeasurement();
    if (x.derivation)
      check(measurement.setDerivation(CID7464_GeneralRegionOfInterestMeasurementModifiers(coded(*x.derivation))), path,
            "derivation");
    if (x.method) check(measurement.setMeasurementMethod(CID6147_ResponseCriteria(coded(*x.method))), path, "method");
    if (!g.algorithm_version.empty()) {
      check(measurement.setAlgorithmIdentification("Vitruvian", g.algorithm_version.substr(0, 64).c_str()), path,
            "algorithm identification");
    }
  }
  add_evaluations(m, g, path);
}

/// A TID 1501 group: a measurement of no segmented region.
void add_individual(TID1500_MeasurementReport& report, const SrGroup& g, const fs::path& path) {
  check(report.addIndividualMeasurements(), path, "a measurement group");
  auto& m = report.getIndividualMeasurements();
  check(m.setTrackingIdentifier(g.tracking_id.substr(0, 64).c_str()), path, "tracking identifier " + g.tracking_id);
  check(m.setTrackingUniqueIdentifier(g.tracking_uid.c_str()), path, "tracking UID " + g.tracking_uid);
  check(m.setFinding(coded(g.finding)), path, "finding " + g.finding.meaning);
  for (const SrMeasurement& x : g.measurements) {
    const CMR_TID1501_in_TID1500::MeasurementValue value(
        decimal_string(x.value).c_str(), CID7181_AbstractMultiDimensionalImageModelComponentUnits(coded(x.unit)));
    check(m.addMeasurement(CID7469_GenericIntensityAndSizeMeasurements(coded(x.concept_name)), value), path,
          x.concept_name.meaning + " of " + g.tracking_id);
    if (x.method)
      check(m.getMeasurement().setMeasurementMethod(CID6147_ResponseCriteria(coded(*x.method))), path, "method");
  }
  add_evaluations(m, g, path);
}

/// Patient, study and series of the source, then the report's own UIDs.
void set_identity(DSRDocument& doc, const SrDescription& d, const fs::path& path) {
  const DicomStudyAttributes& a = d.source.study;
  check(doc.createNewSeriesInStudy(d.source.study.study_uid.c_str()), path,
        "StudyInstanceUID " + d.source.study.study_uid);
  if (!a.specific_character_set.empty()) {
    check(doc.setSpecificCharacterSet(a.specific_character_set.c_str(), false), path, "SpecificCharacterSet");
  }
  check(doc.setPatientName(a.patient_name.c_str(), false), path, "PatientName");
  check(doc.setPatientID(a.patient_id.c_str(), false), path, "PatientID");
  check(doc.setPatientBirthDate(a.patient_birth_date.c_str(), false), path, "PatientBirthDate");
  check(doc.setPatientSex(a.patient_sex.c_str(), false), path, "PatientSex");
  check(doc.setStudyDate(a.study_date.c_str(), false), path, "StudyDate");
  check(doc.setStudyTime(a.study_time.c_str(), false), path, "StudyTime");
  check(doc.setStudyID(a.study_id.c_str(), false), path, "StudyID");
  check(doc.setAccessionNumber(a.accession_number.c_str(), false), path, "AccessionNumber");
  check(doc.setReferringPhysicianName(a.referring_physician_name.c_str(), false), path, "ReferringPhysicianName");
  check(doc.setStudyDescription(a.study_description.c_str(), false), path, "StudyDescription");
  check(doc.setSeriesNumber(d.series_number.c_str()), path, "SeriesNumber");
  check(doc.setSeriesDescription(d.series_description.c_str()), path, "SeriesDescription");
  check(doc.setManufacturer("Vitruvian"), path, "Manufacturer");
  check(doc.setManufacturerModelName("Vitruvian"), path, "ManufacturerModelName");
  check(doc.setSoftwareVersions(d.software_version.c_str()), path, "SoftwareVersions");
  check(doc.setInstanceNumber("1"), path, "InstanceNumber");
  for (const auto& [series, instance] : d.segmentations) {
    check(doc.getCurrentRequestedProcedureEvidence().addItem(d.source.study.study_uid.c_str(), series.c_str(),
                                                             UID_SegmentationStorage, instance.c_str()),
          path, "evidence " + instance);
  }
}

}  // namespace

void write_dicom_sr(const fs::path& path, const SrDescription& d, const std::vector<SrGroup>& groups) {
  TID1500_MeasurementReport report(CMR_CID7021::ImagingMeasurementReport);
  check(report.setLanguage(CID5000_Languages::English), path, "language");
  check(report.getObservationContext().addDeviceObserver(
            d.device_uid.c_str(), "Vitruvian " + OFString(d.software_version.c_str()), "Vitruvian", "Vitruvian"),
        path, "device observer");
  check(report.addProcedureReported(DSRCodedEntryValue("363679005", "SCT", "Imaging procedure")), path,
        "procedure reported");
  for (const SrGroup& g : groups) {
    if (g.segment > 0) {
      add_volumetric(report, g, path);
    } else {
      add_individual(report, g, path);
    }
  }
  if (!report.isValid())
    throw InternalError(path.string(), "DCMTK's TID 1500 report is not valid (a mandatory item is missing)");
  DSRDocument doc;
  check(doc.setTreeFromRootTemplate(report, OFTrue), path, "the report tree");
  set_identity(doc, d, path);
  DcmFileFormat file;
  DcmDataset& data = *file.getDataset();
  check(doc.write(data), path, "writing the document");
  data.putAndInsertString(DCM_SOPInstanceUID, d.sop_instance_uid.c_str());
  data.putAndInsertString(DCM_SeriesInstanceUID, d.series_uid.c_str());
  series_dated_as_content(data);
  check(file.saveFile(path.c_str(), EXS_LittleEndianExplicit), path, "saving the file");
}

}  // namespace vitruvian::data

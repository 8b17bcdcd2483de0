# The libFuzzer harnesses of tests/fuzz (fuzz_<name>.cpp each), for the fuzz tree that builds
# them and for the tests that run them (tests/CMakeLists.txt).
set(VITRUVIAN_FUZZ_HARNESSES
  nifti dicom hdf5 model_card campaign_yaml train_yaml multipart qido_json cfind_identifier)

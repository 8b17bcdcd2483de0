// Errors carry rank, host, the failing call and the library's own message.
#include "core/errors.h"

#include <gtest/gtest.h>

#include "core/mpi.h"
#include "tests/tools/mpi_test_environment.h"

namespace vitruvian {
namespace {

TEST(Errors, MpiErrorFromARealFailingCall) {
  MpiComm::world();  // errors return instead of aborting
  int rank = 0;
  try {
    check_mpi(MPI_Comm_rank(MPI_COMM_NULL, &rank), "MPI_Comm_rank(MPI_COMM_NULL)");
    FAIL() << "MPI accepted MPI_COMM_NULL";
  } catch (const MpiError& e) {
    const std::string text = e.what();
    EXPECT_EQ(text.rfind("MpiError on rank 0/1 on " + testing::mpi().host() + ": MPI_Comm_rank(MPI_COMM_NULL): ", 0), 0u)
        << text;
    EXPECT_NE(text.find("MPI_ERR_COMM"), std::string::npos) << text;  // the library's own words
    EXPECT_NE(e.code(), MPI_SUCCESS);
    EXPECT_EQ(e.rank(), 0);
    EXPECT_EQ(e.host(), testing::mpi().host());
  }
}

TEST(Errors, MessageIsOneLineWhateverItQuotes) {
  const ConfigError error("train.yaml:6", "not valid YAML: unknown escape character: \n");
  const InputError input("scan\r\n01.nii", "header\x01" "byte");
  EXPECT_EQ(std::string(error.what()).find('\n'), std::string::npos) << error.what();
  EXPECT_NE(std::string(error.what()).find("train.yaml:6: not valid YAML: unknown escape character:  "), std::string::npos);
  EXPECT_NE(std::string(input.what()).find("scan  01.nii: header?byte"), std::string::npos) << input.what();
  EXPECT_EQ(input.detail(), "header\x01" "byte");  // the parts keep their text
}

TEST(Errors, KindsAreDistinctAndCarryContext) {
  const InputError input("volume.h5", "dataset 'image' is 2-D; expected 3-D or 4-D");
  EXPECT_EQ(input.kind(), "InputError");
  EXPECT_EQ(input.call(), "volume.h5");
  EXPECT_NE(std::string(input.what()).find("volume.h5: dataset 'image' is 2-D"), std::string::npos);
  const NcclError nccl("ncclAllReduce", 5, "invalid usage");
  EXPECT_NE(std::string(nccl.what()).find("ncclAllReduce: invalid usage (ncclResult_t 5)"), std::string::npos);
  const CudaError cuda("cudaMalloc", 2, "out of memory");
  EXPECT_EQ(cuda.code(), 2);
  const Hdf5Error hdf5("H5Fopen", "#0 H5Fopen: unable to open file");
  EXPECT_EQ(hdf5.kind(), "Hdf5Error");
  const ConfigError config("run.yaml:3", "unknown key 'x'");
  EXPECT_EQ(std::string(config.what()).rfind("ConfigError on rank 0/1", 0), 0u);
}

TEST(Errors, InternalAssertIsAlwaysChecked) {
  int evaluated = 0;
  EXPECT_NO_THROW(VITRUVIAN_INTERNAL_ASSERT(++evaluated == 1, "first"));
  EXPECT_EQ(evaluated, 1);
  try {
    VITRUVIAN_INTERNAL_ASSERT(evaluated == 2, "counter is " + std::to_string(evaluated));
    FAIL();
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("invariant 'evaluated == 2' broken: counter is 1"), std::string::npos);
  }
}

}  // namespace
}  // namespace vitruvian

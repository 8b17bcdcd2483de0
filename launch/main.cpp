// Entry point of the `vitruvian` executable.
#include <csignal>

#include "data/hdf5_exit.h"
#include "launch/cli.h"

int main(int argc, char** argv) {
  // A file size limit (ulimit -f) would otherwise kill the process with SIGXFSZ in the middle of
  // a write, silently; ignored, the write fails with EFBIG and the writer reports it and cleans up
  // its temporary like any other failed write (core/atomic_file.h).
  std::signal(SIGXFSZ, SIG_IGN);
  // After such a failed write HDF5's own clean-up at exit would crash (data/hdf5_exit.h).
  vitruvian::data::skip_hdf5_cleanup_at_exit();
  return vitruvian::run_cli(argc, argv);
}

// Entry point of the `vitruvian` executable.
#include <csignal>

#include "data/hdf5_exit.h"
#include "launch/cli.h"

int main(int argc, char** argv) {
  // A write past the file size limit (ulimit -f) then fails with EFBIG and is reported like any
  // other failed write, naming the file and removing its temporary (core/atomic_file.h), instead
  // of SIGXFSZ ending the process without a word.
  std::signal(SIGXFSZ, SIG_IGN);
  // After such a failed write HDF5's own clean-up at exit would crash (data/hdf5_exit.h).
  vitruvian::data::skip_hdf5_cleanup_at_exit();
  return vitruvian::run_cli(argc, argv);
}

// Entry point of the `vitruvian` executable.
#include <csignal>

#include "launch/cli.h"

int main(int argc, char** argv) {
  // A write past the file size limit (ulimit -f) then fails with EFBIG and is reported like any
  // other failed write, naming the file, instead of SIGXFSZ ending the process without a word.
  std::signal(SIGXFSZ, SIG_IGN);
  return vitruvian::run_cli(argc, argv);
}

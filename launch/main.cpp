// Entry point of the `vitruvian` executable.
#include "launch/cli.h"

int main(int argc, char** argv) { return vitruvian::run_cli(argc, argv); }

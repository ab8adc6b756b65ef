// vergectl: the operator CLI for verge-cloud.
#include <iostream>

#include "ctl/commands.h"

int main(int argc, char** argv) {
  return verge::ctl::Run(argc, argv, verge::ctl::ProcessEnv(), std::cout, std::cerr);
}

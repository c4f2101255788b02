// `salience bench --decode`: times AttentionWithKvCache on decode shapes and
// reports the cache bytes read per second against this machine's DRAM read
// bandwidth (the peak probe's), since decode is bound by reading the cache.
#pragma once

#include "tools/bench_cmd.h"

namespace salience::tools {

// Runs the decode shapes at 1 thread and at --threads (0: one per core);
// returns the process exit code.
int RunDecodeBench(const BenchFlags& flags);

}  // namespace salience::tools

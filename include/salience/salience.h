// salience: exact attention on CPUs. The umbrella header.
#pragma once

#include "salience/attention.h"
#include "salience/decode.h"
#include "salience/status.h"
#include "salience/tensor.h"
#include "salience/version.h"

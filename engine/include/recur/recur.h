// recur: the whole public API in one include.
#pragma once

#include "recur/common/dtype.h"
#include "recur/common/error.h"
#include "recur/engine/bidirectional.h"
#include "recur/engine/bucketing.h"
#include "recur/engine/recurrent.h"
#include "recur/engine/initializers.h"
#include "recur/engine/optimizer.h"
#include "recur/engine/parameters.h"
#include "recur/host/allocator.h"
#include "recur/host/backend.h"
#include "recur/host/conv1d.h"
#include "recur/host/device.h"
#include "recur/host/ops.h"
#include "recur/host/system_info.h"
#include "recur/host/tensor.h"
#include "recur/version.h"

/* tools/models.h - the two training models of clgrad-train (lenet, cnn), built from the
 * public nn API with PyTorch state_dict names; tools/clgrad_torch.py defines the same models
 * in torch. Used by clgrad-train and clgrad-bench.
 */
#ifndef CLGRAD_TOOLS_MODELS_H
#define CLGRAD_TOOLS_MODELS_H

#include <clgrad.h>

/* name: "lenet" or "cnn". *out is owned by the caller (clg_module_free). */
clg_status model_create(clg_context *ctx, const char *name, uint64_t seed, clg_module **out);

#endif

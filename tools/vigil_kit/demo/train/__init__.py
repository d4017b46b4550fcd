"""Trains the demo model: the Perceiver Resampler and Flamingo's tanh-gated
cross-attention blocks on a frozen SmolLM2 and a frozen EfficientNet-Lite0.

Runs under Debian's python3-torch (CPU; `python3 -m vigil_kit.demo.train`):
torch 1.13 with numpy 1.24, so this package imports nothing from the kit
that needs the kit's virtualenv. Inputs come from `vigil_kit.demo prepare`
(features, token ids, the dequantized LM); the output is an .npz of the
trained weights that `vigil_kit.demo export` turns into the runtime's files.

Two stages (models/demo/EVAL.md). Stage 1 (`--pretrain-steps`, stage1.py)
trains the resampler alone, with a training-only ObjectHead that must read
every object's count (and, in clips, which objects move, appear or leave)
off the 64 visual tokens through one learned query per object: dense, exact
labels from the generator (`labels.py`), ~0.75 s a step with no LM in the
loop. The gated blocks then start from that head (`init_blocks`, blocks.py: one block
per question role, reading the head's evidence and writing it towards the
answer tokens) and train on the answer tokens, gates from 0 as in Flamingo,
with the object loss kept on (`--object-weight`; stage2.py). Trained end
to end from random blocks instead, a run of the same length learnt mostly
the answer priors (models/demo/HISTORY.md).

The math is the kit's reference (gguf_lm.py for the LM, xattn.py for the
blocks, resampler.py for the resampler), written in torch (frozen_lm.py,
modules.py); `--check` compares this forward pass with the numpy reference
on the same weights (validate.py).

Files: recipe.py (shapes and constants), modules.py, data.py, stage1.py,
naming.py (the naming block's codes), blocks.py (how the blocks start),
stage2.py, weights.py (the .npz), validate.py, cli.py (the command line).
Options that were tried and not adopted are gone from the code; the
commits in models/demo/HISTORY.md hold them.

The runtime's LM is not that f32 pass: Q4_1 weights times 8-bit
activations move the hidden state entering the first block by ~3 % of
its norm, in structured directions that the blocks turned into flipped
answers. With `--vigil` and `--lm`, stage 2 also trains on the runtime's
own states (`vigil lm-states`), half the rows each way (`--runtime-share`),
and the blocks' query maps are fitted on both: the same prompt with the
same target either way, so the blocks learn to ignore where the two differ.

Speed: everything below the first block depends only on the text, so the
hidden states entering the first block are computed once per distinct token
sequence (without autograd) and cached; the backward pass covers only the
upper layers. Matmuls are fp32 on OpenBLAS (Debian's torch links the
reference BLAS through libblas.so.3: `scripts/demo-model.sh train` makes
sure libopenblas0 provides it, ~15x faster here). bf16 autocast is faster
only on CPUs with AVX-512 BF16 (docs/building.md), which this 2-core AVX2
machine lacks (bf16 matmul 0.35 s vs fp32 OpenBLAS 0.012 s for 512×576×576).
"""


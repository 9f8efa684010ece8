# COSMOS ViT-B/16 on CC3M-recap, continued from pretrained OpenCLIP ViT-B-16 weights instead of
# a random start: the student's dual encoder loads the OpenCLIP checkpoint (a state-dict file
# or an OpenCLIP local-dir model), the cross-attention poolers and token mappings start fresh,
# and the EMA teacher starts as a copy of the loaded student. Everything else is
# configs/cosmos/cosmos_vitb16_cc3m.py. Point it at your weights with
#   train.init_checkpoint=openclip:/path/to/open_clip_pytorch_model.bin   (or a local-dir)
# or $COSMOS_OPENCLIP. OpenAI-trained weights use QuickGELU: add
#   model.student.encoder.visual.quick_gelu=True model.student.encoder.text.quick_gelu=True
# (an OpenCLIP local-dir declares it and a mismatch is refused; a bare state dict cannot tell).
# The recipe's learning rate is for training from scratch; a lower optimizer.lr is common when
# continuing from pretrained weights. The init only applies when the run directory has no
# checkpoint yet: a restarted run resumes from its own checkpoints.
from .cosmos_vitb16_cc3m import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

train.update(
    output_dir="./runs/cosmos_vitb16_cc3m_from_openclip",
    init_checkpoint="openclip:${oc.env:COSMOS_OPENCLIP,/checkpoints/openclip/ViT-B-16}",
)

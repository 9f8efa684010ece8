# Run settings read by tools/train_net.py (Detectron2's configs/common/train.py convention).
train = dict(
    output_dir="./runs/default",
    max_iter=1000,
    seed=0,
    device="auto",                        # auto: cuda when available, else cpu
    amp=dict(enabled=True, dtype="bf16"),  # GPU only; CPU always trains in fp32
    grad_clip=None,                       # max gradient norm, or None
    max_logit_scale=100.0,                # logit scales clamped to [0, ln max_logit_scale]
    checkpoint_period=500,
    max_to_keep=3,
    eval_period=0,                        # 0: evaluate only at the end
    log_period=20,
    init_checkpoint="",
    hooks=[],                             # extra LazyCall hooks
    report_to=["tensorboard"],            # + "wandb" (pip install 'cosmos-ssl[wandb]'); [] = none
    wandb=dict(project="cosmos", entity=None, name=None, group=None, tags=[], mode=None),
    distributed=dict(                     # used when the job has several processes
        strategy="ddp",                   # ddp | fsdp (shards the towers: larger than ViT-B)
        find_unused_parameters=False,     # DDP: True when some parameters get no gradient
        backend="auto",                   # auto: nccl on GPUs, gloo on CPU
        timeout_min=30,                   # collectives wait this long (rank-0 evaluation!)
    ),
)

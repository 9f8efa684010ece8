from cosmos.config import LazyCall as L
from cosmos.data import ClipTokenizer

# The paper's zero-shot benchmarks (arXiv 2412.01814), read from $COSMOS_EVAL_DATA (default
# /datasets/eval) in their standard layouts (docs/evaluation.md). Use with
#   tools/eval_net.py --config-file <model config>
#       --eval-config configs/common/evaluation/benchmarks.py
#       --checkpoint <ckpt> [--evaluators coco,flickr30k,imagenet,...]
_ROOT = "${oc.env:COSMOS_EVAL_DATA,/datasets/eval}"
_VIEW = L("image_crops.clip_eval")(size=224)
_TOKENIZER = L(ClipTokenizer)(context_length=77)

evaluation = dict(
    # retrieval: COCO val2017 with all its captions and Flickr30k's official (Karpathy val) file,
    # as the official code evaluates them
    coco=L("evaluators.retrieval")(root=f"{_ROOT}/coco",
                                   annotation="annotations/captions_val2017.json",
                                   layout="coco", transform=_VIEW, tokenizer=_TOKENIZER),
    flickr30k=L("evaluators.retrieval")(root=f"{_ROOT}/flickr30k-images",
                                        annotation="flickr30k_val.json", layout="flickr_official",
                                        transform=_VIEW, tokenizer=_TOKENIZER),
    # classification: ImageNet-1k val (class folders), 1000 OpenCLIP names, 80 OpenAI templates
    imagenet=L("evaluators.zeroshot_classification")(
        dataset={"name": "imagenet", "root": f"{_ROOT}/imagenet", "split": "test"},
        transform=_VIEW, tokenizer=_TOKENIZER),
    sun397=L("evaluators.zeroshot_classification")(
        dataset={"name": "sun397", "root": f"{_ROOT}/sun397", "split": "test"},
        transform=_VIEW, tokenizer=_TOKENIZER),
    # segmentation (SCLIP protocol, correlative self-attention in the last block as the
    # official inference script uses it)
    voc20=L("evaluators.zeroshot_segmentation")(dataset_name="voc20",
                                                root=f"{_ROOT}/VOCdevkit/VOC2012",
                                                tokenizer=_TOKENIZER, use_csa=True),
    voc21=L("evaluators.zeroshot_segmentation")(dataset_name="voc21",
                                                root=f"{_ROOT}/VOCdevkit/VOC2012",
                                                tokenizer=_TOKENIZER, use_csa=True),
    context59=L("evaluators.zeroshot_segmentation")(dataset_name="context59",
                                                    root=f"{_ROOT}/VOCdevkit/VOC2010",
                                                    tokenizer=_TOKENIZER, use_csa=True),
    context60=L("evaluators.zeroshot_segmentation")(dataset_name="context60",
                                                    root=f"{_ROOT}/VOCdevkit/VOC2010",
                                                    tokenizer=_TOKENIZER, use_csa=True),
    coco_object=L("evaluators.zeroshot_segmentation")(dataset_name="coco_object",
                                                      root=f"{_ROOT}/coco_stuff164k",
                                                      tokenizer=_TOKENIZER, use_csa=True),
    coco_stuff171=L("evaluators.zeroshot_segmentation")(dataset_name="coco_stuff171",
                                                        root=f"{_ROOT}/coco_stuff164k",
                                                        tokenizer=_TOKENIZER, use_csa=True),
    cityscapes=L("evaluators.zeroshot_segmentation")(dataset_name="cityscapes",
                                                     root=f"{_ROOT}/cityscapes",
                                                     tokenizer=_TOKENIZER, use_csa=True),
    ade20k=L("evaluators.zeroshot_segmentation")(dataset_name="ade20k",
                                                 root=f"{_ROOT}/ADEChallengeData2016",
                                                 tokenizer=_TOKENIZER, use_csa=True),
)

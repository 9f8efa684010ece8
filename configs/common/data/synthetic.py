from cosmos.config import LazyCall as L
from cosmos.data import ClipTokenizer, ResumableLoader

# The built-in synthetic scenes: a resumable training stream and a held-out evaluator.
dataloader = dict(
    train=L(ResumableLoader)(
        dataset=L("datasets.synthetic_scenes")(
            num_samples=20000, image_size=64, split="train", seed=0),
        image_transform=L("image_crops.clip_single")(size=64, scale=(0.9, 1.0)),
        text_transform=L("text_crops.full_caption")(pool="long"),
        tokenizer=L(ClipTokenizer)(context_length=77),
        batch_size=64,
        num_workers=1,
        seed="${train.seed}",
    ),
)

evaluation = dict(
    synthetic=L("evaluators.synthetic_scenes")(
        dataset=L("datasets.synthetic_scenes")(num_samples=500, image_size=64, split="val", seed=0),
        transform=L("image_crops.clip_eval")(size=64),
        tokenizer=L(ClipTokenizer)(context_length=77),
        batch_size=128,
    ),
    # zero-shot segmentation mIoU against the scene masks (SCLIP-style dense features), also
    # split into small objects, the dominant object and the background
    segmentation=L("evaluators.synthetic_segmentation")(
        dataset=L("datasets.synthetic_scenes")(num_samples=500, image_size=64, split="val", seed=0),
        tokenizer=L(ClipTokenizer)(context_length=77),
    ),
    # fine-grained (docs/evaluation.md): the true caption against one with one attribute of one
    # object changed, per attribute kind (chance 50 % with one negative) ...
    hard_negatives=L("evaluators.synthetic_hard_negatives")(
        dataset="${evaluation.synthetic.dataset}", transform="${evaluation.synthetic.transform}",
        tokenizer="${evaluation.synthetic.tokenizer}", num_negatives=1, batch_size=128,
    ),
    # ... and small-object sentences retrieving every scene that holds the object they describe
    object_retrieval=L("evaluators.synthetic_object_retrieval")(
        dataset="${evaluation.synthetic.dataset}", transform="${evaluation.synthetic.transform}",
        tokenizer="${evaluation.synthetic.tokenizer}", batch_size=128,
    ),
)

"""Training-free zero-shot semantic segmentation (SCLIP protocol); importing registers the
``zeroshot_segmentation`` and ``synthetic_segmentation`` evaluators."""
from cosmos.evaluation.segmentation.classes import CLASS_NAMES, expand_synonyms  # noqa: F401
from cosmos.evaluation.segmentation.datasets import (DATASET_SPECS, SegDatasetSpec,  # noqa: F401
                                                     SegmentationFolder, get_spec, list_pairs,
                                                     read_label)
from cosmos.evaluation.segmentation.dense import (csa_attention, csa_block_forward,  # noqa: F401
                                                  csa_last_block, dense_features)
from cosmos.evaluation.segmentation.evaluator import (SegmentationEvaluator,  # noqa: F401
                                                      SyntheticSegmentationEvaluator,
                                                      predict_classes, query_embeddings)
from cosmos.evaluation.segmentation.metrics import (ConfusionMatrix, confusion_matrix,  # noqa: F401
                                                    per_class_iou, segmentation_metrics)
from cosmos.evaluation.segmentation.sliding import (SCLIP_MEAN, SCLIP_STD,  # noqa: F401
                                                    keep_ratio_size, normalize, resize_keep_ratio,
                                                    sliding_window_logits, window_boxes)

"""Zero-shot evaluation. Importing this package registers the built-in evaluators."""
from cosmos.evaluation.retrieval import retrieval_metrics  # noqa: F401
from cosmos.evaluation.synthetic import SceneEvaluator  # noqa: F401
from cosmos.evaluation.hard_negatives import HardNegativeEvaluator  # noqa: F401
from cosmos.evaluation.object_retrieval import ObjectRetrievalEvaluator  # noqa: F401
from cosmos.evaluation.probes import ProbeEvaluator  # noqa: F401
from cosmos.evaluation import segmentation  # noqa: F401  (registers the segmentation evaluators)
from cosmos.evaluation.zeroshot_retrieval import RetrievalEvaluator  # noqa: F401
from cosmos.evaluation.classification import ZeroShotClassifier  # noqa: F401

"""Pure ML core of defectloop: data, SuperSimpleNet, training, inference, metrics, artifacts.

Nothing here reads the environment, touches a database or serves the web.

The public API is the names in ``__all__`` (docs/ml.md lists them by concern): what the
service and the benchmarks use, importable as ``from ml import load_dataset``. They load on
first use, so ``import ml`` stays cheap (torch and timm come in with the first name that
needs them); the submodules remain importable as before.

One name differs from its home: ``ml.evaluate.evaluate`` is ``evaluate_model`` here, because
``ml.evaluate`` is the submodule (Python binds a package's attribute to a submodule once it
is imported, so a function of that name would be replaced by the module).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy loader below returns, for type checkers and editors
    from ml.acquisition import (
        RUN_ASK_POLICIES,
        STAGED,
        STRATEGIES,
        AskKind,
        AskPolicy,
        Candidates,
        Costs,
        select,
        staged_ask,
    )
    from ml.artifact import click_head_of, load_model, read_config
    from ml.assist import AssistError, Click, assist_mask
    from ml.calibration import calibration_source
    from ml.calibration_choice import CalibrationChoice, CalibrationSource
    from ml.data import (
        IMAGE_SUFFIXES,
        describe,
        file_sha256,
        is_dataset,
        load_dataset,
        load_sample_mask,
        read_dataset,
        sample_problem,
        write_labels_csv,
    )
    from ml.demo_data import DemoSpec, generate
    from ml.errors import DataError, DefectloopError, TrainingError
    from ml.evaluate import SampleOutputs, calibrate_outputs, load_resized, metrics_from_outputs, run_samples
    from ml.evaluate import evaluate as evaluate_model
    from ml.feature_cache import load_preprocessed, mask_to_feature_grid
    from ml.images import (
        image_size,
        read_image,
        read_mask,
        read_mask_values,
        resize_rgb,
        set_max_pixels,
        to_tensor_batch,
    )
    from ml.overlay import heatmap_overlay, mask_png
    from ml.pipeline import (
        calibration_plan,
        choose_mask_method,
        click_head_masks,
        fit_click_head,
        refine_unsupervised,
        teaches_click_head,
        train_and_save,
    )
    from ml.predict import Predictor
    from ml.profiles import PROFILES, Profile, ProfileName
    from ml.refine import DEFAULT_METHOD, RefineMethod, refine_mask, region_threshold
    from ml.regimes import AUTO, Regime, RegimeChoice, loop_regime, parse_regime
    from ml.samples import PSEUDO_COLUMN, Dataset, Sample
    from ml.splits import SplitPlan, assign_splits
    from ml.supersimplenet.anomaly_generator import feature_noise, synthetic_masks
    from ml.supersimplenet.features import (
        BACKBONES,
        DEFAULT_BACKBONE,
        FeatureExtractor,
        build_classifier_model,
        get_backbone_spec,
    )
    from ml.supersimplenet.model import HeadConfig, SuperSimpleNet
    from ml.train import TrainedModel, fit
    from ml.train_config import TrainConfig

__all__ = [
    # errors
    "DataError",
    "DefectloopError",
    "TrainingError",
    # datasets: types, reading, validation, splits
    "IMAGE_SUFFIXES",
    "PSEUDO_COLUMN",
    "Dataset",
    "Sample",
    "SplitPlan",
    "assign_splits",
    "describe",
    "file_sha256",
    "is_dataset",
    "load_dataset",
    "load_sample_mask",
    "read_dataset",
    "sample_problem",
    "write_labels_csv",
    "DemoSpec",
    "generate",
    "CalibrationChoice",
    "CalibrationSource",
    "calibration_source",
    # images
    "image_size",
    "read_image",
    "read_mask",
    "read_mask_values",
    "resize_rgb",
    "set_max_pixels",
    "to_tensor_batch",
    # training
    "PROFILES",
    "Profile",
    "ProfileName",
    "TrainConfig",
    "TrainedModel",
    "fit",
    "AUTO",
    "Regime",
    "RegimeChoice",
    "loop_regime",
    "parse_regime",
    "train_and_save",
    "refine_unsupervised",
    "choose_mask_method",
    "calibration_plan",
    "click_head_masks",
    "fit_click_head",
    "teaches_click_head",
    # the network and its backbones
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "FeatureExtractor",
    "build_classifier_model",
    "get_backbone_spec",
    "HeadConfig",
    "SuperSimpleNet",
    "feature_noise",
    "synthetic_masks",
    "load_preprocessed",
    "mask_to_feature_grid",
    # models on disk, inference, evaluation
    "load_model",
    "click_head_of",
    "read_config",
    "Predictor",
    "SampleOutputs",
    "calibrate_outputs",
    "evaluate_model",
    "load_resized",
    "metrics_from_outputs",
    "run_samples",
    # masks and overlays
    "DEFAULT_METHOD",
    "RefineMethod",
    "refine_mask",
    "region_threshold",
    "AssistError",
    "Click",
    "assist_mask",
    "heatmap_overlay",
    "mask_png",
    # acquisition
    "RUN_ASK_POLICIES",
    "STAGED",
    "STRATEGIES",
    "AskKind",
    "AskPolicy",
    "Candidates",
    "Costs",
    "select",
    "staged_ask",
]

#: the home module of each public name (the lazy loader's table; mirrors the imports above)
_MODULES: dict[str, tuple[str, ...]] = {
    "ml.errors": ("DataError", "DefectloopError", "TrainingError"),
    "ml.samples": ("PSEUDO_COLUMN", "Dataset", "Sample"),
    "ml.splits": ("SplitPlan", "assign_splits"),
    "ml.calibration": ("calibration_source",),
    "ml.calibration_choice": ("CalibrationChoice", "CalibrationSource"),
    "ml.data": (
        "IMAGE_SUFFIXES",
        "describe",
        "file_sha256",
        "is_dataset",
        "load_dataset",
        "load_sample_mask",
        "read_dataset",
        "sample_problem",
        "write_labels_csv",
    ),
    "ml.demo_data": ("DemoSpec", "generate"),
    "ml.images": (
        "image_size",
        "read_image",
        "read_mask",
        "read_mask_values",
        "resize_rgb",
        "set_max_pixels",
        "to_tensor_batch",
    ),
    "ml.profiles": ("PROFILES", "Profile", "ProfileName"),
    "ml.train_config": ("TrainConfig",),
    "ml.train": ("TrainedModel", "fit"),
    "ml.regimes": ("AUTO", "Regime", "RegimeChoice", "loop_regime", "parse_regime"),
    "ml.pipeline": (
        "train_and_save",
        "refine_unsupervised",
        "choose_mask_method",
        "calibration_plan",
        "click_head_masks",
        "fit_click_head",
        "teaches_click_head",
    ),
    "ml.supersimplenet.features": (
        "BACKBONES",
        "DEFAULT_BACKBONE",
        "FeatureExtractor",
        "build_classifier_model",
        "get_backbone_spec",
    ),
    "ml.supersimplenet.model": ("HeadConfig", "SuperSimpleNet"),
    "ml.supersimplenet.anomaly_generator": ("feature_noise", "synthetic_masks"),
    "ml.feature_cache": ("load_preprocessed", "mask_to_feature_grid"),
    "ml.artifact": ("click_head_of", "load_model", "read_config"),
    "ml.predict": ("Predictor",),
    "ml.evaluate": ("SampleOutputs", "calibrate_outputs", "load_resized", "metrics_from_outputs", "run_samples"),
    "ml.refine": ("DEFAULT_METHOD", "RefineMethod", "refine_mask", "region_threshold"),
    "ml.assist": ("AssistError", "Click", "assist_mask"),
    "ml.overlay": ("heatmap_overlay", "mask_png"),
    "ml.acquisition": (
        "RUN_ASK_POLICIES",
        "STAGED",
        "STRATEGIES",
        "AskKind",
        "AskPolicy",
        "Candidates",
        "Costs",
        "select",
        "staged_ask",
    ),
}
#: public name -> (home module, attribute there)
_HOMES: dict[str, tuple[str, str]] = {
    **{name: (module, name) for module, names in _MODULES.items() for name in names},
    "evaluate_model": ("ml.evaluate", "evaluate"),
}

if not TYPE_CHECKING:  # hidden from type checkers, which would otherwise accept any name of ml as Any

    def __getattr__(name: str) -> Any:
        """A public name, imported from its home module on first use (PEP 562)."""
        try:
            module, attribute = _HOMES[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # later uses find it without this function
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""PoseModel: a network ready to run, with everything needed to go from a person box to keypoints in image pixels.

It is built in one place, from a recipe (`from_recipe`, also for training and `bench`) or from a checkpoint
(`from_checkpoint`), and holds the network, its codec, the skeleton, the crop size (H, W), the box padding, the
precision and the device. It offers the three steps every user of a trained model needs, each written once:

    crop (box -> centre/scale -> affine -> warp -> normalise)  ->  maps (forward, flip-averaged on request)
        ->  decode (codec, crop pixels)  ->  to_image (inverse affine, image pixels)

`engine.evaluate.predict`, the `Predictor`, `export`, `vis` and `bench` all go through it. Sizes inside clpose are
(H, W), as in recipes and on the command line; points and box sizes are (x, y) and (w, h) vectors.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clpose.codecs import Codec, build_codec, get_codec
from clpose.config import Recipe
from clpose.data.dataset import normalize, normalize_batch
from clpose.data.transforms import apply_affine, box_to_center_scale, invert_affine, person_affine, warp, warp_batch
from clpose.engine.checkpoint import read_checkpoint
from clpose.engine.graphs import GraphedForward, graphs_unavailable
from clpose.errors import ClposeError, first_line
from clpose.models import build_model, check_input_size, final_output, get_entry, model_options, output_stride
from clpose.precision import FP32, Precision, resolve_precision
from clpose.recipes import load_recipe, recipe_from_dict
from clpose.safeload import check_finite_weights
from clpose.skeletons import SKELETONS, Skeleton, get_skeleton


def recipe_codec(recipe: Recipe, input_hw: tuple[int, int] | None = None) -> Codec:
    """The recipe's codec for its crop size (or `input_hw`) at the model's output stride (known without building
    the model), after checking that the size fits the model."""
    options = model_options(recipe.model, pretrained=False)
    hw = input_hw or recipe.data.input_size
    check_input_size(recipe.model.name, hw, **options)
    return build_codec(recipe.codec, hw, output_stride(recipe.model.name, **options))


def model_recipe(name: str, input_hw: tuple[int, int]) -> Recipe:
    """The recipe of a registered model at its defaults (its own codec), for measuring a model by name (`bench`)."""
    codec = get_entry(name).codec
    loss = get_codec(codec).default_loss
    raw = {
        "model": {"name": name},
        "codec": {"name": codec},
        "loss": {"name": loss},
        "data": {"dataset": "-", "root": "-"},
    }
    raw["data"]["input_size"] = f"{input_hw[0]}x{input_hw[1]}"
    return recipe_from_dict(raw, f"model {name}")


def check_model_fits_codec(model: str, codec: str) -> None:
    """A model fits a codec whose maps have as many channels per keypoint as those of the model's own codec."""
    own = get_entry(model).codec
    if get_codec(own).channels_per_keypoint != get_codec(codec).channels_per_keypoint:
        raise ClposeError(
            f"model {model} predicts {own} maps ({get_codec(own).channels_per_keypoint} per keypoint) but codec.name "
            f"{codec} decodes {get_codec(codec).channels_per_keypoint} per keypoint"
        )


def any_skeleton(num_keypoints: int) -> Skeleton:
    """The dataset skeleton with K keypoints (MPII for 16), or a plain one without flip pairs for another K."""
    for name in ("mpii", "coco", "lsp"):
        if get_skeleton(name).num_keypoints == num_keypoints:
            return get_skeleton(name)
    keypoints = tuple(f"keypoint_{i}" for i in range(num_keypoints))
    return Skeleton(f"{num_keypoints} keypoints", keypoints, (), (), "bbox")


def load_trained(path: str | Path, recipe_path: str | Path | None = None) -> tuple[dict[str, Any], Recipe, str]:
    """A checkpoint's state, the recipe it was trained with (or the recipe file given instead) and the SHA-256 of
    the bytes loaded."""
    state, digest = read_checkpoint(path)
    if recipe_path is not None:
        return state, load_recipe(Path(recipe_path)), digest
    return state, recipe_from_dict(state["recipe"], f"{path} (recipe)"), digest


def checkpoint_skeleton(state: dict[str, Any], recipe: Recipe, path: str | Path) -> Skeleton:
    """The skeleton a checkpoint predicts, checked against its number of keypoints."""
    name = state.get("skeleton") or recipe.data.dataset
    if name not in SKELETONS:
        raise ClposeError(f"checkpoint {path} was trained on skeleton {name!r}, which clpose does not know")
    skeleton = get_skeleton(name)
    if skeleton.num_keypoints != int(state["num_keypoints"]):
        raise ClposeError(
            f"checkpoint {path} predicts {state['num_keypoints']} keypoints, skeleton {name} has "
            f"{skeleton.num_keypoints}"
        )
    return skeleton


@dataclass
class PoseModel:
    """A network with its codec, skeleton, crop size (H, W), box padding, precision and device.

    Build it with `from_recipe` or `from_checkpoint`; the constructor only stores what it is given (the network is
    moved to `device` and, with `channels_last`, to that memory format)."""

    model: nn.Module
    codec: Codec
    skeleton: Skeleton
    input_hw: tuple[int, int]
    box_padding: float = 1.25
    precision: Precision = FP32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    channels_last: bool = False
    cuda_graphs: bool = False  # replay the forward from CUDA graphs (clpose.engine.graphs) where the device allows
    # what runs the network instead of calling it (clpose.engine.runtimes: an ONNX Runtime or OpenVINO session, a
    # torch.compile'd module); its attribute `autocast` says whether `precision`'s autocast applies around it
    runner: Any = None
    checkpoint_sha256: str | None = None  # of the checkpoint bytes the weights came from (from_checkpoint, eval)
    recipe: Recipe | None = None  # the recipe it was built from (its data calibrate an int8 graph)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.input_hw = (int(self.input_hw[0]), int(self.input_hw[1]))
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._graphed: GraphedForward | None = None

    def use_cuda_graphs(self, enabled: bool = True) -> str | None:
        """Turn CUDA graphs on or off for inference; returns why they cannot be used here (None when they can)."""
        reason = graphs_unavailable(self.device) if enabled else None
        self.cuda_graphs, self._graphed = enabled and reason is None, None
        return reason

    def _forward(self, x: torch.Tensor) -> Any:
        if self.runner is not None:
            return self.runner(x)
        if not self.cuda_graphs:
            return self.model(x)
        if self._graphed is None:
            self.model.eval()
            self._graphed = GraphedForward(self.model, self.device, self.precision)
        return self._graphed(x)

    @classmethod
    def from_recipe(
        cls,
        recipe: Recipe,
        skeleton: Skeleton,
        state: dict[str, Any] | None = None,
        device: torch.device | str = "cpu",
        amp: str | Precision = "off",
        input_hw: tuple[int, int] | None = None,
        pretrained: bool = True,
        source: str = "the checkpoint",
    ) -> PoseModel:
        """The recipe's network for `skeleton` (with the weights of `state` when given, else the recipe's
        `pretrained` trunk where `pretrained`), its codec and crop settings."""
        hw = tuple(input_hw or recipe.data.input_size)
        codec = recipe_codec(recipe, hw)
        check_model_fits_codec(recipe.model.name, recipe.codec.name)
        options = model_options(recipe.model, pretrained=pretrained and state is None)
        model = build_model(recipe.model.name, skeleton.num_keypoints, **options)
        if state is not None:
            check_finite_weights(state["model"], source)
            try:
                model.load_state_dict(state["model"])
            except RuntimeError as e:
                raise ClposeError(
                    f"{source}: its weights do not fit {recipe.model.name} ({first_line(e, 300)})"
                ) from None
        device = torch.device(device)
        precision = amp if isinstance(amp, Precision) else resolve_precision(amp, device)
        pose = cls(model, codec, skeleton, hw, recipe.data.box_padding, precision, device, recipe.train.channels_last)
        pose.recipe = recipe
        return pose

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: torch.device | str = "cpu",
        amp: str | Precision = "auto",
        recipe_path: str | Path | None = None,
        input_hw: tuple[int, int] | None = None,
    ) -> PoseModel:
        """A clpose checkpoint's network, codec and skeleton. `amp` is resolved on this machine: the precision the
        model was trained in does not bind how it runs."""
        state, recipe, digest = load_trained(path, recipe_path)
        skeleton = checkpoint_skeleton(state, recipe, path)
        pose = cls.from_recipe(recipe, skeleton, state, device, amp, input_hw, source=f"checkpoint {path}")
        pose.checkpoint_sha256 = digest
        return pose

    # -- the three steps ---------------------------------------------------------------------------------------

    def affine(self, box_xywh: np.ndarray) -> np.ndarray:
        """The 2x3 matrix from image pixels to the crop of a person box [x, y, w, h] (padded, fitted to H/W)."""
        center, scale = box_to_center_scale(box_xywh)
        return person_affine(center, scale, self.input_hw, self.box_padding)

    def crop(self, image_bgr: np.ndarray, box_xywh: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """The normalised crop (3, H, W) of one person box and its affine matrix."""
        affine = self.affine(box_xywh)
        return normalize(warp(image_bgr, affine, self.input_hw)), affine

    def crops(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
        """Crops (N, 3, H, W) of every box (M_i, 4) of every image, in order, and their affines (N, 2, 3). On a GPU
        each image is uploaded once and cropped there (`crops_on_device`); elsewhere OpenCV crops each box."""
        if self.device.type == "cuda":
            return self.crops_on_device(images, boxes)
        pairs = [
            self.crop(image, box)
            for image, image_boxes in zip(images, boxes, strict=True)
            for box in np.asarray(image_boxes, dtype=np.float64).reshape(-1, 4)
        ]
        if not pairs:
            return torch.zeros(0, 3, *self.input_hw), np.zeros((0, 2, 3))
        return torch.stack([c for c, _ in pairs]), np.stack([a for _, a in pairs])

    @torch.inference_mode()
    def crops_on_device(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
        """`crops` made on the model's device: each BGR image goes there once as uint8, every box of it is cut with
        one `grid_sample` (clpose.data.transforms.warp_batch: within 2 grey levels of OpenCV's crop)."""
        boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes]
        affines = [self.affine(box) for image_boxes in boxes for box in image_boxes]
        if not affines:
            return torch.zeros(0, 3, *self.input_hw, device=self.device), np.zeros((0, 2, 3))
        uploaded = [
            torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1))).to(self.device)
            for image in images
        ]
        index = torch.tensor([i for i, image_boxes in enumerate(boxes) for _ in image_boxes], device=self.device)
        stacked = np.stack(affines)
        crops = warp_batch(uploaded, torch.from_numpy(stacked), self.input_hw, index)
        return normalize_batch(crops), stacked

    @torch.inference_mode()
    def maps(self, crops: torch.Tensor, flip: bool = False, stages: bool = False) -> list[torch.Tensor]:
        """The network's maps (float32, on the device) for normalised crops: the last stage, or every stage of a
        multi-stage model with `stages`; with `flip`, averaged with the codec's flip-back of the mirrored crops."""
        self.model.eval()
        if stages and self.runner is not None and self.runner.last_stage_only:
            raise ClposeError(f"{self.runner.name} runs the exported graph, which has the last stage only: use torch")
        x = crops.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = self.runner is None or self.runner.autocast
        with self.precision.autocast(self.device) if autocast else contextlib.nullcontext():
            outs = self._stages(self._forward(x), stages)
            if flip:
                flipped = self._stages(self._forward(x.flip(-1)), stages)
                flip_index = self.skeleton.flip_index
                return [
                    (o.float() + self.codec.flip_back(f.float(), flip_index)) / 2
                    for o, f in zip(outs, flipped, strict=True)
                ]
        return [o.float() for o in outs]

    @staticmethod
    def _stages(output: torch.Tensor | list[torch.Tensor], stages: bool) -> list[torch.Tensor]:
        if stages and isinstance(output, (list, tuple)):
            return list(output)
        return [final_output(output)]

    @torch.inference_mode()
    def decode(self, maps: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, K, 2) in crop pixels and scores (N, K) (float64 numpy): the codec's decode, on the maps'
        device. Maps that are not finite are a ClposeError: every prediction of clpose (scores, submission files,
        infer's JSON, pictures) comes through here, and a NaN must never become a number that looks right."""
        bad = ~torch.isfinite(maps.flatten(1)).all(dim=1)
        if bool(bad.any()):
            mixed = self.precision.dtype is not None
            hint = "an fp16/bf16 overflow? try --amp off" if mixed else "are the inputs finite?"
            raise ClposeError(
                f"the network's output is not finite (NaN or inf) for {int(bad.sum())} of {len(maps)} crops "
                f"(precision {self.precision.name}): {hint}"
            )
        keypoints, scores = self.codec.decode_output(maps)
        return keypoints.cpu().numpy().astype(np.float64), scores.cpu().numpy().astype(np.float64)

    @staticmethod
    def to_image(keypoints: np.ndarray, affines: np.ndarray) -> np.ndarray:
        """Crop-pixel keypoints (N, K, 2) -> image pixels, through the inverse of each crop's affine (N, 2, 3)."""
        if len(affines) == 0:
            return keypoints
        return apply_affine(keypoints, invert_affine(affines))

    def keypoints(
        self, crops: torch.Tensor, affines: np.ndarray, flip: bool = False, stages: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints in image pixels (S, N, K, 2) and scores (S, N, K) of crops made with `affines` (S = 1 unless
        `stages`)."""
        k = self.skeleton.num_keypoints
        if len(crops) == 0:
            return np.zeros((1, 0, k, 2)), np.zeros((1, 0, k))
        decoded = [self.decode(m) for m in self.maps(crops, flip, stages)]
        return (
            np.stack([self.to_image(kp, affines) for kp, _ in decoded]),
            np.stack([s for _, s in decoded]),
        )

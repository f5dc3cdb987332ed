"""Plant realistic one-line bugs, one at a time, and check that the test suite catches each.

    python dev/mutate.py                      # every mutant, with and without ../shared/realdata
    python dev/mutate.py --only oks           # the mutants whose name contains "oks" (repeatable: any of them)
    python dev/mutate.py --list               # the catalogue

A mutant is (name, file, the exact line(s) it replaces, the replacement, the test files to run). The runner
applies it, runs those tests with `pytest -x -q` (first with the real sample data, then with
CLPOSE_NO_REALDATA=1, which makes the `realdata` fixture skip as on a machine without ../shared), and restores the
file whatever happens. A mutant is *caught* when pytest fails. The tests listed per mutant are those that mirror the
module plus the cross-cutting ones (tests/test_conventions.py, tests/test_flip.py, tests/test_trust.py): if they
miss it, the suite misses it too, since nothing else imports the planted line more directly.

To add a mutant when you fix a bug or add a formula: write the one-line slip someone could make (a sign, a factor,
a comparison, a missing step), add it below, run `python dev/mutate.py --only NAME`, and make sure it is caught
without the real data as well. docs/reliability.md ("Keeping the suite honest") says more.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


CONV, FLIP, TRUST = "tests/test_conventions.py", "tests/test_flip.py", "tests/test_trust.py"
EVAL, PREP = "tests/test_eval.py", "tests/test_prepare.py"

MUTANTS = [
    # the flip test
    Mutant("flip: raw flipped maps averaged", "clpose/engine/posemodel.py",
           "(o.float() + self.codec.flip_back(f.float(), flip_index)) / 2", "(o.float() + f.float()) / 2",
           (FLIP, "tests/test_posemodel.py")),
    Mutant("flip: composite channels not swapped", "clpose/codecs/composite.py",
           "(part[:, idx] for part in split_channels(output.flip(-1)))",
           "(part for part in split_channels(output.flip(-1)))", (FLIP, "tests/test_codecs.py")),
    Mutant("flip: composite x offsets not negated", "clpose/codecs/composite.py",
           "torch.cat([heat, off_y, shift - off_x], dim=1)", "torch.cat([heat, off_y, off_x], dim=1)",
           (FLIP, "tests/test_codecs.py")),
    Mutant("flip: heatmap channels not swapped", "clpose/codecs/heatmap.py",
           "back = output.flip(-1)[:, torch.as_tensor(flip_index, device=output.device)]",
           "back = output.flip(-1)", (FLIP, "tests/test_codecs.py")),
    Mutant("flip: heatmap column shift missing", "clpose/codecs/heatmap.py",
           "shifted[..., 1:] = back[..., :-1]", "pass", (FLIP, "tests/test_codecs.py")),
    # OKS, OKS-NMS and COCO rescoring
    Mutant("oks: variance sigma^2 instead of (2 sigma)^2", "clpose/evaluation/coco.py",
           "variances = (2 * np.asarray(sigmas)) ** 2", "variances = np.asarray(sigmas) ** 2", (CONV, EVAL)),
    Mutant("oks: scale from one box, not the mean of the two areas", "clpose/evaluation/coco.py",
           "scale = (area_a + np.asarray(areas)) / 2 + np.spacing(1)", "scale = np.asarray(areas) + np.spacing(1)",
           (CONV, EVAL)),
    Mutant("oks-nms: suppress at the threshold itself", "clpose/evaluation/coco.py",
           "order = list(rest[overlap <= threshold])", "order = list(rest[overlap < threshold])", (CONV, EVAL)),
    Mutant("rescoring: box score left out", "clpose/evaluation/coco.py",
           "return np.asarray(box_scores, dtype=np.float64) * mean", "return mean + 0 * np.asarray(box_scores)",
           (CONV, EVAL, "tests/test_eval_checkpoint.py")),
    Mutant("rescoring: keypoint scores below the threshold kept", "clpose/evaluation/coco.py",
           "above = s > threshold  #", "above = s > -1  #", (CONV, EVAL, "tests/test_eval_checkpoint.py")),
    Mutant("oks: a NaN prediction scored by plain COCOeval", "clpose/evaluation/coco.py",
           "ev = _finite_cocoeval()(gt, dt", "ev = __import__('pycocotools.cocoeval').cocoeval.COCOeval(gt, dt",
           (TRUST, EVAL)),
    # PCK / PCKh
    Mutant("pck: threshold not inclusive", "clpose/evaluation/pck.py",
           "correct = (err <= alpha", "correct = (err < alpha", (EVAL, CONV)),
    Mutant("pckh: head size 0.5 of the diagonal", "clpose/evaluation/pck.py", "HEAD_SCALE = 0.6", "HEAD_SCALE = 0.5",
           (EVAL, CONV)),
    Mutant("pckh: Mean@0.1 at another alpha", "clpose/evaluation/scoring.py",
           'PCKH = PckKind("pckh", "head_box", 0.1, True)', 'PCKH = PckKind("pckh", "head_box", 0.15, True)',
           (EVAL, CONV)),
    Mutant("pckh: the official Head column from other joints", "clpose/skeletons.py",
           "official_head=(8, 9),", "official_head=(9, 9),", (EVAL, CONV)),
    Mutant("pck: a bounding-box normaliser from the shorter side", "clpose/evaluation/pck.py",
           "side = (hi - lo).max(axis=-1)", "side = (hi - lo).min(axis=-1)", (EVAL, CONV)),
    Mutant("torso: LSP normalised by other joints", "clpose/skeletons.py",
           "torso_joints=(9, 2),", "torso_joints=(8, 3),", (CONV, EVAL, "tests/test_skeletons.py")),
    Mutant("oks-nms: areas of the unpadded box", "clpose/evaluation/scoring.py",
           "box_size(records.scales[i], dataset.input_hw, dataset.box_padding)",
           "box_size(records.scales[i], dataset.input_hw, 1.0)", (CONV, EVAL, "tests/test_eval_checkpoint.py")),
    Mutant("lsp: the test set is the first 1000 people", "clpose/evaluation/ground_truth.py",
           "keypoints=self.keypoints[-n:], labelled=self.labelled[-n:]",
           "keypoints=self.keypoints[:n], labelled=self.labelled[:n]",
           (EVAL, CONV)),
    Mutant("conventions: align shifts the wrong way", "clpose/evaluation/ground_truth.py",
           "return pred + (float(gt.one_based) - float(pred_one_based))",
           "return pred - (float(gt.one_based) - float(pred_one_based))",
           (EVAL, CONV, "tests/test_prediction_files.py")),
    Mutant("torso: synthetic skeleton normalised by other joints", "clpose/skeletons.py",
           "torso_joints=(13, 2)", "torso_joints=(12, 3)", (CONV, "tests/test_skeletons.py")),
    # writers of prediction files
    Mutant("submission: MPII preds written 0-based", "clpose/evaluation/submission.py",
           'scipy.io.savemat(str(tmp), {"preds": kpts + 1.0})', 'scipy.io.savemat(str(tmp), {"preds": kpts})',
           ("tests/test_submission.py", "tests/test_eval_checkpoint.py")),
    Mutant("submission: LSP joints written 0-based", "clpose/evaluation/submission.py",
           "joints = np.concatenate([kpts + 1.0, scores[..., None]], axis=2)",
           "joints = np.concatenate([kpts, scores[..., None]], axis=2)",
           ("tests/test_submission.py", "tests/test_eval_checkpoint.py")),
    # geometry
    Mutant("affine: crop centre at W / 2, not (W - 1) / 2", "clpose/data/transforms.py",
           "shift = np.array([(w_out - 1) / 2, (h_out - 1) / 2])", "shift = np.array([w_out / 2, h_out / 2])",
           ("tests/test_data_pipeline.py", CONV, FLIP)),
    Mutant("predictions mapped back with the affine, not its inverse", "clpose/engine/posemodel.py",
           "return apply_affine(keypoints, invert_affine(affines))", "return apply_affine(keypoints, affines)",
           ("tests/test_posemodel.py", FLIP)),
    Mutant("encode: y offsets with the wrong sign", "clpose/codecs/composite.py",
           "offsets[:k] = (-dy / self.stride)", "offsets[:k] = (dy / self.stride)", ("tests/test_codecs.py",)),
    Mutant("schedule: warm-up a step late", "clpose/training/setup.py",
           "min(1.0, (step + 1) / warmup)", "min(1.0, step / warmup)",
           ("tests/test_engine_units.py", "tests/test_train.py")),
    # data: crops and dataset conversions
    Mutant("crop: training box not padded", "clpose/data/dataset.py",
           "size = box_size(self.records.scales[i], self.input_hw, self.box_padding)",
           "size = box_size(self.records.scales[i], self.input_hw, 1.0)", (CONV, "tests/test_data_pipeline.py")),
    Mutant("prepare: LSP left 1-based", "clpose/data/prepare/lsp.py",
           "kpts = arr.transpose(2, 1, 0).copy()\n    kpts[:, :, :2] -= 1.0",
           "kpts = arr.transpose(2, 1, 0).copy()\n    kpts[:, :, :2] -= 0.0", (PREP,)),
    Mutant("prepare: LSP occlusion flag inverted", "clpose/data/prepare/lsp.py",
           "np.where(arr[2].T > 0.5, 1.0, 2.0)", "np.where(arr[2].T > 0.5, 2.0, 1.0)", (PREP,)),
    Mutant("prepare: MPII centre not moved down 15 x scale", "clpose/data/prepare/mpii.py",
           "c[1] += 15 * scale", "c[1] += 0 * scale", (PREP,)),
    Mutant("prepare: MPII joints left 1-based", "clpose/data/prepare/mpii.py",
           "keypoints[labelled, :2] = joints[labelled] - 1.0", "keypoints[labelled, :2] = joints[labelled]", (PREP,)),
    Mutant("prepare: MPII head boxes left 1-based", "clpose/data/prepare/mpii.py",
           "self.boxes = boxes.reshape(-1, 4) - 1.0", "self.boxes = boxes.reshape(-1, 4)", (PREP,)),
    Mutant("prepare: COCO box clipped without HRNet's -1", "clpose/data/prepare/coco.py",
           "x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))", "x2 = min(width - 1.0, x1 + max(0.0, w))", (PREP,)),
    # losses and codecs
    Mutant("loss: offsets pooled over every cell (Eq. 5 per keypoint)", "clpose/losses.py",
           "per_keypoint = per_cell.sum(dim=(2, 3)) / count.clamp_min(1)\n    return per_keypoint.mean()",
           "return per_cell.sum() / count.sum().clamp_min(1) / per_cell.shape[0]", (CONV, "tests/test_losses.py")),
    Mutant("decode: heatmap quarter shift at column 1", "clpose/codecs/heatmap.py",
           "inner = (px > 1) & (px < wp - 1) & (py > 1) & (py < hp - 1)",
           "inner = (px >= 1) & (px < wp - 1) & (py >= 1) & (py < hp - 1)", (CONV, "tests/test_codecs.py")),
    Mutant("decode: composite votes strictly above tau", "clpose/codecs/composite.py",
           "votes = F.threshold(hm, self._below_tau, 0.0)", "votes = F.threshold(hm, self.tau, 0.0)",
           ("tests/test_codecs.py",)),
    # One-Euro
    Mutant("one-euro: tau without its 2", "clpose/inference/smoothing.py",
           "tau = 1.0 / (2 * math.pi * np.asarray(cutoff, dtype=np.float64))",
           "tau = 1.0 / (math.pi * np.asarray(cutoff, dtype=np.float64))", (CONV, "tests/test_inference.py")),
    Mutant("one-euro: cutoff from the raw speed", "clpose/inference/smoothing.py",
           "cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)", "cutoff = self.min_cutoff + self.beta * np.abs(dx)",
           (CONV, "tests/test_inference.py")),
    Mutant("one-euro: speed updated on invalid points", "clpose/inference/smoothing.py",
           "self.dx = np.where(update, dx_hat,", "self.dx = np.where(self.started, dx_hat,",
           (CONV, "tests/test_inference.py")),
    Mutant("runtime: ONNX Runtime's maps mirrored", "clpose/engine/runtimes.py",
           "return torch.from_numpy(maps)", "return torch.from_numpy(maps).flip(-1)", ("tests/test_runtimes.py",)),
    Mutant("runtime: graph cache ignores the checkpoint's bytes", "clpose/engine/graph_cache.py",
           "        checkpoint_sha256,\n", "        'any checkpoint',\n", ("tests/test_runtimes.py",)),
    Mutant("runtime: a damaged cached graph is run", "clpose/engine/graph_cache.py",
           'return graph_sha if record.get("graph_sha256") == graph_sha else None', "return graph_sha",
           ("tests/test_runtimes.py",)),
    Mutant("runtime: --threads not given to ONNX Runtime", "clpose/engine/runtimes.py",
           "options.intra_op_num_threads = threads", "options.intra_op_num_threads = 2", ("tests/test_runtimes.py",)),
    Mutant("runtime: ONNX Runtime's idle threads spin", "clpose/engine/runtimes.py",
           'add_session_config_entry("session.intra_op.allow_spinning", "0")',
           'add_session_config_entry("session.intra_op.allow_spinning", "1")', ("tests/test_runtimes.py",)),
    Mutant("runtime: bench interleaves runtimes run by run", "clpose/speed/bench.py",
           "turn = [i for i, e in enumerate(entries) if e.runtime == runtime]", "turn = list(range(len(entries)))",
           ("tests/test_runtimes.py",)),
    Mutant("runtime: graph keyed by the file, not the bytes the weights came from", "clpose/engine/graph_cache.py",
           "digest = pose.checkpoint_sha256 or sha256(checkpoint)", "digest = sha256(checkpoint)",
           ("tests/test_runtimes.py",)),
    Mutant("runtime: another crop size's graph removed as stale", "clpose/engine/graph_cache.py",
           ' and made.get("checkpoint_sha256") != digest', "", ("tests/test_runtimes.py",)),
    Mutant("runtime: a cached graph run unchecked by its runtime", "clpose/engine/graph_cache.py",
           "if verified(graph_sha, key, runtime):", "if True:", ("tests/test_runtimes.py",)),
    Mutant("runtime: a check remembered for another runtime counts", "clpose/engine/graph_cache.py",
           'return runtime in _record(_verified_path(graph_sha, key)).get("checked_by", [])',
           'return _verified_path(graph_sha, key).is_file()', ("tests/test_runtimes.py",)),
    Mutant("runtime: a cache folder that is a link is followed", "clpose/engine/graph_cache.py",
           "if beside.is_symlink():", "if False:", ("tests/test_runtimes.py",)),
    Mutant("runtime: the lock follows a planted link", "clpose/io.py",
           'os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)', "os.O_RDWR | os.O_CREAT",
           ("tests/test_runtimes.py",)),
    Mutant("parity: signed map differences", "clpose/engine/onnx_graph.py",
           "maps_diff = float(np.abs(np.asarray(got[0]) - expected[0]).max())",
           "maps_diff = float((np.asarray(got[0]) - expected[0]).max())", ("tests/test_parity.py",)),
    Mutant("parity: keypoints on the tau edge compared", "clpose/engine/onnx_graph.py",
           "stable = codec.decision_margin(torch.from_numpy(maps)).numpy() > 2 * changed",
           "stable = codec.decision_margin(torch.from_numpy(maps)).numpy() > -1", ("tests/test_parity.py",)),
    Mutant("parity: composite margin ignores tau", "clpose/codecs/composite.py",
           "return torch.where(voted, tau_gap, torch.minimum(tau_gap, peak_gap))", "return peak_gap",
           ("tests/test_parity.py",)),
    # what clpose did not write
    Mutant("ownership: the demo adopts a folder of the user's", "clpose/outputs.py",
           "foreign = [n for n in self.names if n not in ours and (self.folder / n).exists()]", "foreign = []",
           ("tests/test_ownership.py",)),
    Mutant("ownership: the user's recipe.yaml taken for the run's", "clpose/training/run_folder.py",
           "return head.startswith((RECIPE_HEADER, _OLD_RECIPE_HEADER))", "return True",
           ("tests/test_run_folder.py",)),
    Mutant("ownership: prepare's clip files unchecked", "clpose/data/prepare/__init__.py",
           'outputs = {"the summary": out / "summary.json", **(also_writes or {})}',
           'outputs = {"the summary": out / "summary.json"}', ("tests/test_ownership.py",)),
    Mutant("io: a long name's temporary name past 255 bytes", "clpose/io.py",
           "if len(stem) <= room:", "if True:", ("tests/test_io_atomic.py",)),
    Mutant("health: advice to set what is set", "clpose/training/health.py",
           'if float(getattr(loss, "w_h", LEARNED_W_H)) < LEARNED_W_H:', "if True:",
           ("tests/test_training_health.py",)),
    # photos, boxes and video of infer
    Mutant('exif: tag read but not applied', 'clpose/inference/photos.py',
           '    return upright(image, orientation), orientation',
           '    return image, orientation', ("tests/test_infer_trust.py",)),
    Mutant('exif: 6 turned as 8', 'clpose/inference/photos.py',
           '    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],',
           '    6: lambda a: a.transpose(1, 0, 2)[::-1],', ("tests/test_infer_trust.py",)),
    Mutant("boxes ids: names' numbers always", 'clpose/inference/detector.py',
           'else _folder_reading(ints, names, self._numbers, self.path)', 'else "number"',
           ("tests/test_infer_trust.py",)),
    Mutant('boxes ids: two readings not refused', 'clpose/inference/detector.py',
           '    for judged in (covers, matches):',
           '    for judged in (covers, matches, {"index": True, "number": False}):', ("tests/test_infer_trust.py",)),
    Mutant('boxes ids: 1-based video ids not refused', 'clpose/inference/detector.py',
           '    if count > 0 and max(ints) == count:', '    if False:', ("tests/test_infer_trust.py",)),
    Mutant('boxes ids: 1-based ids over part of a video read as indices', 'clpose/inference/detector.py',
           '    elif min(ints) == 1:', '    elif False:', ("tests/test_infer_trust.py",)),
    Mutant('boxes ids: only all-digit names hold a number', 'clpose/inference/detector.py',
           '_NAME_NUMBER = re.compile(r"([0-9]+)$")', '_NAME_NUMBER = re.compile(r"^([0-9]+)$")',
           ("tests/test_infer_trust.py",)),
    Mutant('follow: crossing people never merged', 'clpose/inference/follow.py',
           '            elif any(same_person(other, (kp, confident), SAME_PERSON) for other in followed):',
           '            elif False:', ("tests/test_follow.py", "tests/test_follow_loop.py")),
    Mutant("follow: rtmlib's box for detected people", 'clpose/inference/follow.py',
           '            return Shape.of(np.asarray(person[3], dtype=np.float64), tight), np.zeros(2)',
           '            return RTMLIB, np.zeros(2)', ("tests/test_follow.py", "tests/test_follow_loop.py")),
    Mutant('follow: no motion carried', 'clpose/inference/follow.py',
           'return self.shapes[i], centre - self.centres[i]', 'return self.shapes[i], np.zeros(2)',
           ("tests/test_follow.py", "tests/test_follow_loop.py")),
    Mutant('follow: the worse of two merged kept', 'clpose/inference/follow.py',
           'key=lambda i: -float(np.mean(people[i][1]))', 'key=lambda i: float(np.mean(people[i][1]))',
           ("tests/test_follow.py", "tests/test_follow_loop.py")),
    Mutant('box rule: share inside not checked', 'clpose/inference/predictor.py',
           '    if share < MIN_AREA_INSIDE:',
           '    if share < 0:', ("tests/test_infer_trust.py",)),
    Mutant('box rule: a sub-pixel overlap counts', 'clpose/inference/predictor.py',
           '    if inside_w < 1 or inside_h < 1:',
           '    if inside_w <= 0 or inside_h <= 0:', ("tests/test_infer_trust.py",)),
    Mutant('infer: boxes not checked in the run', 'clpose/inference/run.py',
           'found = [usable_boxes(f.image.shape[:2], b, s) for f, (b, s, _) in zip(batch, sources, strict=True)]',
           'found = [(b, s, []) for f, (b, s, _) in zip(batch, sources, strict=True)]', ("tests/test_infer_trust.py",)),
    Mutant('vfr: tracker timed by index / fps', 'clpose/inference/run.py',
           'self.tracker.update(poses, frame.index, frame.time)',
           'self.tracker.update(poses, frame.index, frame.index / 25.0)',
           ("tests/test_infer_trust.py",)),
    Mutant('vfr: frame time from the index', 'clpose/inference/video.py',
           '        t = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0',
           '        t = i / self.fps', ("tests/test_infer_trust.py",)),
    Mutant('folder: unreadable entries given to the output guard', 'clpose/inference/run.py',
           '        images = [p for p in entries if p.name not in unreadable]',
           '        images = entries', ("tests/test_infer_trust.py",)),
    Mutant('camera: index not range-checked', 'clpose/inference/video.py',
           '    if index > _CAMERA_MAX:',
           '    if False:', ("tests/test_infer_trust.py",)),
    Mutant('camera: unicode digits', 'clpose/inference/video.py',
           '_CAMERA = re.compile(r"[0-9]+")',
           '_CAMERA = re.compile(r"\\d+")', ("tests/test_infer_trust.py",)),
    Mutant('drawing: far keypoints handed to OpenCV', 'clpose/vis.py',
           '    ok = (scores >= threshold) & (np.abs(keypoints) <= FAR).all(axis=1)',
           '    ok = (scores >= threshold) & np.isfinite(keypoints).all(axis=1)', ("tests/test_infer_trust.py",)),
    # weights, pretrained trunks, scoring files, printing (issue 31)
    Mutant('weights: no overall deadline', 'clpose/download.py',
           '        if now - start >= limit:\n',
           '        if False:\n', ('tests/test_weights_trust.py',)),
    Mutant('weights: no minimum rate', 'clpose/download.py',
           '        if rate and now - then >= RATE_WINDOW_S',
           '        if False and now - then >= RATE_WINDOW_S', ('tests/test_weights_trust.py',)),
    Mutant('weights: a read waits for a whole chunk', 'clpose/download.py',
           'response.read1(_CHUNK)',
           'response.read(_CHUNK)', ('tests/test_weights_trust.py',)),
    Mutant('weights: CLPOSE_OFFLINE=off read as offline', 'clpose/download.py',
           '    return word in _TRUE\n',
           '    return word not in ("", "0", "false", "no")\n', ('tests/test_weights_trust.py',)),
    Mutant('weights: an unknown CLPOSE_OFFLINE value read as online', 'clpose/download.py',
           '    if word not in _TRUE + _FALSE:\n',
           '    if False:\n', ('tests/test_weights_trust.py',)),
    Mutant('weights: a mirror that is no folder taken as given', 'clpose/weights.py',
           '    if not folder.is_dir():\n',
           '    if False:\n', ('tests/test_weights_trust.py',)),
    Mutant("weights: a mirror folder's file used unverified", 'clpose/weights.py',
           '_verify(entry, origin, "replace it with a good copy")',
           'sha256(origin)', ('tests/test_weights_trust.py',)),
    Mutant('weights: the listing trusts a cached file by its name', 'clpose/weights.py',
           '    return path, "verified" if sha256(path).startswith(entry.hash_prefix) else "damaged"\n',
           '    return path, "verified"\n', ('tests/test_weights_trust.py',)),
    Mutant('pretrained: only the tensors the trunk loads are checked', 'clpose/models/backbones.py',
           '    for k, v in state.items():\n        if k.startswith(head):',
           '    for k, v in ((k, v) for k, v in state.items() if k in own):'
           '\n        if k.startswith(head):',
           ('tests/test_weights_trust.py',)),
    Mutant('pretrained: missing trunk tensors allowed', 'clpose/models/backbones.py',
           '    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]',
           '    missing = []', ('tests/test_weights_trust.py',)),
    Mutant('pretrained: the classifier head held to the shape rule', 'clpose/models/backbones.py',
           '        if k.startswith(head):',
           '        if k.startswith("head."):', ('tests/test_weights_trust.py',)),
    Mutant('match: predictions placed by position, not by index', 'clpose/evaluation/ground_truth.py',
           '    out[pred.indices] = pred.keypoints',
           '    out[:] = pred.keypoints', ('tests/test_scoring_trust.py',)),
    Mutant("match: a predictions JSON's skeleton not checked", 'clpose/evaluation/prediction_files.py',
           'if skeleton is not None and said is not None and said != skeleton:',
           'if False:', ('tests/test_scoring_trust.py',)),
    Mutant('file scoring: records read as MPII people', 'clpose/evaluation/ground_truth.py',
           'gt = records_ground_truth(records, get_skeleton(records.skeleton))',
           'gt = records_ground_truth(records, get_skeleton("mpii"))', ('tests/test_scoring_trust.py',)),
    Mutant('pck: a torso from joints that are not labelled', 'clpose/evaluation/pck.py',
           '        size = torso_size(gt, labelled, (a, b))',
           '        size = torso_size(gt, np.ones_like(labelled), (a, b))', ('tests/test_scoring_trust.py',)),
    Mutant('pck: excluded people not reported', 'clpose/evaluation/pck.py',
           'return sizes, {text: int(mask.sum()) for text, mask in reasons.items() if mask.any()}',
           'return sizes, {}', ('tests/test_scoring_trust.py',)),
    Mutant('pck: a column of no labelled joint as NaN', 'clpose/evaluation/pck.py',
           '            mark_undefined(table, name, f"no {names} is labelled among the people scored")',
           '            table[name] = float("nan")', ('tests/test_scoring_trust.py',)),
    Mutant("oks: pycocotools' -1 kept as a number", 'clpose/evaluation/coco.py',
           '        if value != -1:',
           '        if True:', ('tests/test_scoring_trust.py',)),
    Mutant('oks: a NaN ground-truth area accepted', 'clpose/evaluation/coco.py',
           'if not is_number(area) or not math.isfinite(area) or area < 0:',
           'if not is_number(area) or area < 0:', ('tests/test_scoring_trust.py',)),
    Mutant('oks: a duplicate annotation id accepted', 'clpose/evaluation/coco.py',
           '        if ann["id"] in seen:',
           '        if False:', ('tests/test_scoring_trust.py',)),
    Mutant('oks: crowds counted as scorable ground truth', 'clpose/evaluation/coco.py',
           'if not a["iscrowd"] and a["num_keypoints"] > 0]',
           'if a["num_keypoints"] > 0]', ('tests/test_scoring_trust.py',)),
    Mutant('eval: checkpoint options ignored with --predictions', 'clpose/cli/evaluate.py',
           'for name in CHECKPOINT_ONLY if scoring_a_file else FILE_ONLY:',
           'for name in () if scoring_a_file else FILE_ONLY:', ('tests/test_scoring_trust.py',)),
    Mutant('best: an undefined headline improves on no best', 'clpose/evaluation/metrics.py',
           '        if math.isnan(value):\n            return False\n',
           '', ('tests/test_scoring_trust.py',)),
    Mutant('submission: clpose JSON keypoints rounded', 'clpose/evaluation/submission.py',
           '[[float(x), float(y), round(float(s), 4)]',
           '[[round(float(x), 4), round(float(y), 4), round(float(s), 4)]', ('tests/test_scoring_trust.py',)),
    Mutant('print: paths read as markup', 'clpose/console.py',
           'console = Console(highlight=False, markup=False,',
           'console = Console(highlight=False, markup=True,', ('tests/test_cli.py', 'tests/test_infer_trust.py')),
    Mutant('match: a file without index not checked by its images', 'clpose/evaluation/ground_truth.py',
           '            _check_image(pred, gt, j, j)',
           '            pass', ('tests/test_scoring_trust.py',)),
    Mutant('match: image names typed only with an index', 'clpose/evaluation/prediction_files.py',
           'if p.get("image") is not None and not isinstance(p["image"], str):',
           'if has[j] and p.get("image") is not None and not isinstance(p["image"], str):',
           ('tests/test_scoring_trust.py',)),
    Mutant('lsp: the test set of a joints.mat of any size', 'clpose/evaluation/ground_truth.py',
           '    test = LSP_TEST if len(kpts) == LSP_PEOPLE else None',
           '    test = LSP_TEST', ('tests/test_scoring_trust.py',)),
    Mutant('lsp: the scored people not said', 'clpose/evaluation/scoring.py',
           '        table["people_scored"] = gt.people_scored',
           '        pass', ('tests/test_scoring_trust.py',)),
    Mutant('lsp: the test set said as the first people', 'clpose/evaluation/ground_truth.py',
           'people {total - n + 1}-{total} of',
           'people 1-{n} of', ('tests/test_scoring_trust.py',)),
    Mutant('oks: a labelled person of area 0 accepted', 'clpose/evaluation/coco.py',
           'and area < MIN_PERSON_AREA:',
           'and area < 0:', ('tests/test_scoring_trust.py',)),
    Mutant('oks: the area floor exclusive', 'clpose/evaluation/coco.py',
           'and area < MIN_PERSON_AREA:',
           'and area <= MIN_PERSON_AREA:', ('tests/test_scoring_trust.py',)),
    Mutant('oks: the area floor held to crowds and unlabelled people', 'clpose/evaluation/coco.py',
           'if count > 0 and not ann["iscrowd"] and area < MIN_PERSON_AREA:',
           'if area < MIN_PERSON_AREA:', ('tests/test_scoring_trust.py',)),
    Mutant('clip: gait runs outside the band', 'clpose/data/synthetic_video.py',
           'clock[t] = clock[t - 1] + inside',
           'clock[t] = clock[t - 1] + 1', ('tests/test_synthetic_video.py',)),
    Mutant('clip: truth lists people fully outside', 'clpose/data/prepare/synthetic.py',
           'for p in np.flatnonzero(present(vis)).tolist()',
           'for p in range(len(vis))', ('tests/test_synthetic_video.py',)),
    Mutant('clip: boxes carry the position, not the id', 'clpose/data/prepare/synthetic.py',
           '"person": person["person"],',
           '"person": frame["people"].index(person),', ('tests/test_synthetic_video.py',)),
    Mutant('clip: leaves is the last frame in', 'clpose/data/prepare/synthetic.py',
           '"leaves": at[-1] + 1 if',
           '"leaves": at[-1] if', ('tests/test_synthetic_video.py',)),
    Mutant('clip: step from the height', 'clpose/data/synthetic_video.py',
           'self.pace * self.width / self.fps',
           'self.pace * self.height / self.fps', ('tests/test_synthetic_video.py',)),
    Mutant('clip: walkers not kept in the band', 'clpose/data/synthetic_video.py',
           'heading, slope = _stay_in(pos, heading, slope, step, band, width)',
           'pass', ('tests/test_synthetic_video.py',)),
    Mutant('clip: odd sizes allowed', 'clpose/data/synthetic_video.py',
           'or value % 2:',
           ':', ('tests/test_synthetic_video.py',)),
    Mutant('clip: leave bound ignores the figure', 'clpose/data/synthetic_video.py',
           'return math.ceil((self.width / 2 + farthest) / self.step) + 1',
           'return math.ceil((self.width / 2) / self.step) + 1', ('tests/test_synthetic_video.py',)),
    Mutant("training: best.pt of a lower-is-better metric judged higher-is-better", "clpose/evaluation/metrics.py",
           "return value > best if self.higher_is_better else value < best", "return value > best",
           ("tests/test_run_folder.py",)),
    Mutant("prepare: LSPET visibility flag inverted", "clpose/data/prepare/lsp.py",
           "visible = kpts[:, :, 2] > 0.5", "visible = kpts[:, :, 2] < 0.5", (PREP,)),
    Mutant("runtime: OpenVINO in bf16 where the CPU emulates it", "clpose/engine/runtimes.py",
           'precision.name == "bf16" and precision.native and openvino_has_bf16()', 'precision.name == "bf16"',
           ("tests/test_runtimes.py",)),
]  # fmt: skip


def run(mutant: Mutant, realdata: bool) -> str | None:
    """The first test that failed (None where none did): apply the mutant, run its tests, restore the file. A run
    where pytest itself failed (a collection error) is an error here, not a catch."""
    path = REPO / mutant.file
    original = path.read_text(encoding="utf-8")
    if original.count(mutant.old) != 1:
        raise SystemExit(f"{mutant.name}: the planted text occurs {original.count(mutant.old)} times in {path}")
    env = {**os.environ, "CLPOSE_NO_REALDATA": "0" if realdata else "1"}
    try:
        path.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
        argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests]
        result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    finally:
        path.write_text(original, encoding="utf-8")
    failed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    if result.returncode not in (0, 1) or (result.returncode == 1 and not failed):
        raise SystemExit(f"{mutant.name}: pytest did not run the tests (exit {result.returncode}):\n{result.stdout}")
    return failed[0] if failed else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run the mutants whose name contains this text (repeatable)")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--no-realdata-only", action="store_true", help="skip the run with the real sample data")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or any(text in m.name for text in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name}  ({m.file}; {', '.join(m.tests)})")
        return 0
    modes = [False] if args.no_realdata_only else [True, False]
    missed = []
    print("| mutant | with ../shared/realdata | without |\n|---|---|---|")
    for m in chosen:
        cells = []
        for realdata in (True, False):
            if realdata not in modes:
                cells.append("-")
                continue
            caught = run(m, realdata)
            cells.append(f"caught by {caught.split('/')[-1]}" if caught else "**missed**")
            if not caught:
                missed.append(f"{m.name} ({'with' if realdata else 'without'} realdata)")
        print(f"| {m.name} | {cells[0]} | {cells[1]} |", flush=True)
    print(f"{len(chosen)} mutants, {len(missed)} missed" + (": " + "; ".join(missed) if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

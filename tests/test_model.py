import json, signal, time
import numpy as np, pytest, torch, torch.nn as nn, torch.nn.functional as F
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.torch_core import norm_types
from mask_fastai.core import TASKS, N_CLASSES, encode_class, age_to_group
from mask_fastai.model import *

XB = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope='module')
def lite():
    torch.manual_seed(0)
    return create_mask_model(pretrained=False).eval()


def _outer(t):
    return torch.einsum('bi,bj,bk->bijk', *(t[k].softmax(1) for k in TASKS)).flatten(1)


@pytest.mark.parametrize('kw', [dict(head='multi'), dict(head='joint'), dict(head='multi', age_head='fine'),
                                dict(arch='resnet18', head='multi', ms_dropout=3)])
def test_output_shape(kw):
    m = create_mask_model(pretrained=False, **kw)
    for mode in (m.train, m.eval):
        mode()
        assert m(XB).shape == (2, N_CLASSES)


def test_multi_head_is_product_and_marginals(lite):
    t = lite.forward_tasks(XB)
    torch.testing.assert_close(t['joint'].softmax(1), _outer(t), atol=1e-6, rtol=1e-5)
    lp = task_log_probs(t['joint'])
    for k in TASKS: torch.testing.assert_close(lp[k], F.log_softmax(t[k], 1), atol=1e-5, rtol=1e-5)
    # class order: joint prob of (mask, gender, age) sits at encode_class(mask, gender, age)
    p = t['joint'].softmax(1)
    for m, g, a in [(0, 0, 0), (1, 1, 2), (2, 0, 1)]:
        torch.testing.assert_close(p[:, encode_class(m, g, a)],
                                   t['mask'].softmax(1)[:, m] * t['gender'].softmax(1)[:, g] * t['age_group'].softmax(1)[:, a])


def test_joint_head_raw_logits_and_marginals():
    m = create_mask_model(pretrained=False, head='joint').eval()
    t = m.forward_tasks(XB)
    torch.testing.assert_close(t['joint'], m.head.fc(m.body(XB)))
    p = t['joint'].softmax(1).view(2, 3, 2, 3)
    torch.testing.assert_close(t['gender'].exp(), p.sum((1, 3)))


def test_fine_age_head_sums_into_groups():
    m = create_mask_model(pretrained=False, age_head='fine', age_bins=(30, 58)).eval()
    out = m(XB)
    fine = m.fine_age_logits
    edges = m.cfg.fine_age_edges
    assert fine.shape == (2, len(edges) + 1)
    grp = age_to_group(np.array([edges[0] - 1, *edges]), (30, 58))  # group of each fine bin
    pf = fine.softmax(1)
    expect = torch.stack([pf[:, torch.tensor(grp == j)].sum(1) for j in range(3)], 1)
    t = m.forward_tasks(XB)
    torch.testing.assert_close(t['age_group'].exp(), expect)
    torch.testing.assert_close(task_log_probs(out)['age_group'].exp(), expect, atol=1e-6, rtol=1e-5)
    assert (fine_to_group_matrix(edges, (30, 58)).sum(1) == 1).all()
    ages = np.arange(10, 90)
    assert (fine_to_group_matrix(edges, (30, 58)).argmax(1).numpy()[fine_age_bin(ages, edges)] == age_to_group(ages, (30, 58))).all()


def test_fine_edges_must_contain_group_edges():
    with pytest.raises(ValueError, match=r'\[60\]'):
        ModelConfig(age_head='fine', fine_age_edges=(20, 30, 40, 50))


def test_ms_dropout_train_only():
    m = create_mask_model(pretrained=False, arch='resnet18', ms_dropout=4, dropout=0.5)
    m.eval()
    assert torch.equal(m(XB), m(XB))
    m.train()
    assert not torch.equal(m.head.logits(torch.ones(2, 512)), m.head.logits(torch.ones(2, 512)))


def test_splitter_covers_params_once(lite):
    groups = mask_splitter(lite)
    ids = [id(p) for g in groups for p in g]
    assert len(groups) == 2 and len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in lite.parameters()}
    assert {id(p) for p in groups[1]} == {id(p) for p in lite.head.parameters()}


def test_freeze_keeps_head_and_bn_trainable():
    m = create_mask_model(pretrained=False)
    ds = [(torch.randn(3, 32, 32), torch.tensor(i % N_CLASSES)) for i in range(4)]
    learn = Learner(DataLoaders.from_dsets(ds, ds, bs=2), m, loss_func=nn.CrossEntropyLoss(), splitter=mask_splitter)
    learn.freeze()
    bn = {id(p) for mod in m.body.modules() if isinstance(mod, norm_types) for p in mod.parameters(recurse=False)}
    assert bn and all(p.requires_grad for p in m.head.parameters())
    for n, p in m.body.named_parameters(): assert p.requires_grad == (id(p) in bn), n
    learn.unfreeze()
    assert all(p.requires_grad for p in m.parameters())


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    m = create_mask_model(pretrained=False, age_head='fine', ms_dropout=2).eval()
    (tmp_path/'config.json').write_text(json.dumps({'train': {'lr': 1e-3}}))
    save_mask_model(m, m.cfg, tmp_path)
    m2, cfg = load_mask_model(tmp_path)
    assert cfg == m.cfg
    assert torch.equal(m2(XB), m(XB))
    conf = json.loads((tmp_path/'config.json').read_text())
    assert conf['train'] == {'lr': 1e-3} and conf['model']['age_head'] == 'fine'


def test_save_channels_last(tmp_path):
    m = create_mask_model(pretrained=False, arch='resnet18').eval()
    ref = m(XB)
    m.to(memory_format=torch.channels_last)
    out = m(XB.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    save_mask_model(m, None, tmp_path)
    m2, _ = load_mask_model(tmp_path)
    torch.testing.assert_close(m2(XB), ref, atol=1e-4, rtol=1e-4)


def test_config_json_round_trip():
    cfg = ModelConfig(arch='resnet18', head='joint', dropout=0.3, pool='catavgmax')
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match='unknown ModelConfig keys'):
        ModelConfig.from_dict({**cfg.to_dict(), 'epochs': 3})
    with pytest.raises(ValueError, match="head must be"):
        ModelConfig(head='tri')


def test_default_loads_packaged_weights():
    m = create_mask_model()  # pretrained=True, default arch, offline
    src = torch.load(offline_weights_path(), map_location='cpu', weights_only=True)
    sd = m.body.state_dict()
    assert torch.equal(sd['conv_stem.weight'], src['_conv_stem.weight'])
    assert torch.equal(sd['blocks.3.2.conv_pw.weight'], src['_blocks.7._expand_conv.weight'])
    assert torch.equal(sd['bn2.running_mean'], src['_bn1.running_mean'])
    assert norm_stats(m.cfg.arch) == ((0.5,) * 3, (0.5,) * 3)


def test_unknown_arch_suggests_close_names():
    with pytest.raises(ValueError, match='efficientnet_lite0'):
        create_mask_model(arch='efficientnet_lite', pretrained=False)
    with pytest.raises(ValueError, match='convnext_tiny'):
        create_mask_model(arch='convnxt_tiny', pretrained=False)


def _alarm(signum, frame): raise TimeoutError('pretrained download did not fail fast offline')


def test_pretrained_other_arch_offline_fails_fast():
    "Offline, a non-default arch with pretrained=True fails in seconds with advice (guarded by a 30 s alarm)."
    from mask_fastai.model import _hub_answers
    if _hub_answers(): pytest.skip('network available: the download would succeed')
    old = signal.signal(signal.SIGALRM, _alarm); signal.alarm(30)
    try:
        t0 = time.time()
        with pytest.raises(RuntimeError, match="resnet18.*no network.*tf_efficientnet_lite1.*pretrained=False"):
            create_mask_model(arch='resnet18', pretrained=True)
        assert time.time() - t0 < 10
    finally:
        signal.alarm(0); signal.signal(signal.SIGALRM, old)

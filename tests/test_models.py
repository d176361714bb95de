import pytest
import torch

from pipeline.config import BackboneConfig, ConfigError
from pipeline.model import models


def test_local_weights_file_is_loaded_into_an_18_class_model(tmp_path):
    torch.manual_seed(0)
    source = models.create(BackboneConfig(name="test_resnet"))
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    torch.manual_seed(1)
    loaded = models.create(BackboneConfig(name="test_resnet", weights=str(tmp_path / "weights.pth")))
    a, b = source.state_dict(), loaded.state_dict()
    body = [k for k in a if not k.startswith("fc.")]
    assert body and all(torch.equal(a[k], b[k]) for k in body)
    assert loaded.get_classifier().out_features == 18


def test_model_errors_name_the_backbone(tmp_path):
    with pytest.raises(ConfigError, match="'no_such_net' is not a timm model"):
        models.create(BackboneConfig(name="no_such_net"))
    with pytest.raises(ConfigError, match="weights file .*missing.pth not found"):
        models.create(BackboneConfig(name="test_resnet", weights=str(tmp_path / "missing.pth")))


def test_freeze_leaves_only_the_head_trainable():
    m = models.create(BackboneConfig(name="test_resnet"))
    models.set_backbone_trainable(m, False)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in m.named_parameters() if n.startswith("fc.")}
    models.set_backbone_trainable(m, True)
    assert all(p.requires_grad for p in m.parameters())
